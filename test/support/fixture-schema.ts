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
CREATE TABLE users (
  id serial PRIMARY KEY,
  organization_id integer NOT NULL REFERENCES organizations (id),
  email text NOT NULL,
  password_hash text NOT NULL,
  reset_token text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
-- Projects with their tasks (nested rows), and to-dos whose open ones a view shows (a view-backed model).
CREATE TABLE projects (
  id serial PRIMARY KEY,
  organization_id integer REFERENCES organizations (id),
  name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tasks ADD COLUMN project_id integer REFERENCES projects (id);
CREATE TABLE todos (
  id serial PRIMARY KEY,
  organization_id integer REFERENCES organizations (id),
  title text NOT NULL,
  done boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE VIEW open_todos AS
  SELECT id, organization_id, title, done, created_at, updated_at FROM todos WHERE NOT done;
`
