/**
 * The tables of the fixture app (test/fixtures/app/server/utils/db.ts),
 * free of vitest so that the benchmark script can create them too.
 */
export const FIXTURE_SCHEMA = `
CREATE TABLE organizations (
  id serial PRIMARY KEY,
  name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE tasks (
  id serial PRIMARY KEY,
  organization_id integer REFERENCES organizations (id),
  title text NOT NULL,
  done boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tasks_organization_id ON tasks (organization_id);
-- Projects with their tasks (nested rows), and the open tasks (a view-backed model).
CREATE TABLE projects (
  id serial PRIMARY KEY,
  organization_id integer REFERENCES organizations (id),
  name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tasks ADD COLUMN project_id integer REFERENCES projects (id);
CREATE VIEW open_tasks AS
  SELECT id, organization_id, project_id, title, done, created_at, updated_at FROM tasks WHERE NOT done;
`
