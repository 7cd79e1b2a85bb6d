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
`
