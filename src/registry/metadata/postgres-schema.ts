/**
 * @module registry/metadata/postgres-schema
 * The registry's PostgreSQL schema as versioned migrations (component `registry`, applied by
 * db/migrate at start under its advisory lock). The tables are SQLite's (sqlite.ts) with PostgreSQL
 * types: times are ms since the epoch in `bigint`, flags `boolean`, JSON in `text` (rows.ts maps
 * both dialects), and names compared and sorted byte-wise (`COLLATE "C"`) as OCI's lexical tag and
 * repository order wants, whatever the database's locale.
 */
import type { Migration } from '../../db/index.js';

/** A text key sorted byte-wise. */
const KEY = 'text COLLATE "C" NOT NULL';

export const REGISTRY_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'distribution, projects, users, robots, webhooks',
    up: `
CREATE TABLE blobs (digest ${KEY} PRIMARY KEY, size bigint NOT NULL, touched_at bigint NOT NULL);
CREATE TABLE repo_blobs (repo ${KEY}, digest ${KEY}, created_at bigint NOT NULL, PRIMARY KEY (repo, digest));
CREATE INDEX repo_blobs_digest ON repo_blobs (digest);
CREATE TABLE repositories (id bigserial PRIMARY KEY, name ${KEY} UNIQUE, project ${KEY}, created_at bigint NOT NULL,
  updated_at bigint NOT NULL, pull_count bigint NOT NULL DEFAULT 0);
CREATE TABLE manifests (repo ${KEY}, digest ${KEY}, media_type text NOT NULL, size bigint NOT NULL, body bytea NOT NULL,
  artifact_type text, subject text COLLATE "C", annotations text, created_at bigint NOT NULL, PRIMARY KEY (repo, digest));
CREATE INDEX manifests_subject ON manifests (repo, subject);
CREATE TABLE manifest_refs (repo ${KEY}, manifest ${KEY}, digest ${KEY}, kind text NOT NULL,
  PRIMARY KEY (repo, manifest, kind, digest));
CREATE INDEX manifest_refs_digest ON manifest_refs (digest, kind);
CREATE TABLE tags (repo ${KEY}, tag ${KEY}, digest ${KEY}, updated_at bigint NOT NULL, PRIMARY KEY (repo, tag));
CREATE INDEX tags_digest ON tags (repo, digest);
CREATE TABLE projects (id bigserial PRIMARY KEY, name ${KEY} UNIQUE, public boolean NOT NULL, owner text NOT NULL,
  created_at bigint NOT NULL, updated_at bigint NOT NULL);
CREATE TABLE users (id bigserial PRIMARY KEY, username ${KEY} UNIQUE, password_hash text NOT NULL, sysadmin boolean NOT NULL,
  created_at bigint NOT NULL, updated_at bigint NOT NULL);
CREATE TABLE robots (id bigserial PRIMARY KEY, name ${KEY} UNIQUE, description text NOT NULL, level text NOT NULL,
  secret_hash text NOT NULL, permissions text NOT NULL, disabled boolean NOT NULL, expires_at bigint NOT NULL,
  duration bigint NOT NULL, created_at bigint NOT NULL, updated_at bigint NOT NULL);
CREATE TABLE webhook_policies (id bigserial PRIMARY KEY, project_id bigint NOT NULL, name ${KEY}, description text NOT NULL,
  enabled boolean NOT NULL, event_types text NOT NULL, targets text NOT NULL, creator text NOT NULL,
  created_at bigint NOT NULL, updated_at bigint NOT NULL, UNIQUE (project_id, name));
CREATE TABLE webhook_outbox (id bigserial PRIMARY KEY, policy_id bigint NOT NULL, event_type text NOT NULL, target text NOT NULL,
  payload text NOT NULL, status text NOT NULL, attempts integer NOT NULL, next_at bigint NOT NULL, repo ${KEY},
  digest ${KEY}, untagged boolean NOT NULL, last_error text NOT NULL, created_at bigint NOT NULL, updated_at bigint NOT NULL);
CREATE INDEX webhook_outbox_due ON webhook_outbox (status, next_at);
CREATE TABLE webhook_attempts (id bigserial PRIMARY KEY, outbox_id bigint NOT NULL, attempt integer NOT NULL, at bigint NOT NULL,
  status_code integer NOT NULL, error text NOT NULL, duration_ms bigint NOT NULL);
CREATE INDEX webhook_attempts_outbox ON webhook_attempts (outbox_id);`,
  },
  {
    version: 2,
    name: 'quotas and project usage, audit log, gc runs and schedule, shared settings',
    up: `
CREATE TABLE project_blobs (project ${KEY}, digest ${KEY}, size bigint NOT NULL, refs integer NOT NULL, PRIMARY KEY (project, digest));
CREATE TABLE quotas (id bigserial PRIMARY KEY, project ${KEY} UNIQUE, hard bigint NOT NULL, used bigint NOT NULL,
  created_at bigint NOT NULL, updated_at bigint NOT NULL);
CREATE TABLE audit_log (id bigserial PRIMARY KEY, project_id bigint NOT NULL, username text NOT NULL, resource text NOT NULL,
  resource_type text NOT NULL, operation text NOT NULL, description text NOT NULL, success boolean NOT NULL, op_time bigint NOT NULL);
CREATE INDEX audit_log_time ON audit_log (op_time);
CREATE INDEX audit_log_project ON audit_log (project_id, op_time);
CREATE TABLE gc_runs (id bigserial PRIMARY KEY, trigger_kind text NOT NULL, parameters text NOT NULL, status text NOT NULL,
  stop_requested boolean NOT NULL DEFAULT false, log text NOT NULL DEFAULT '', owner text NOT NULL DEFAULT '',
  created_at bigint NOT NULL, updated_at bigint NOT NULL);
CREATE TABLE gc_schedule (id integer PRIMARY KEY CHECK (id = 1), type text NOT NULL, cron text NOT NULL, parameters text NOT NULL,
  next_run bigint NOT NULL, created_at bigint NOT NULL, updated_at bigint NOT NULL);
CREATE TABLE settings (key text PRIMARY KEY, value text NOT NULL);`,
  },
];
