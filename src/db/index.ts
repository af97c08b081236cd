/**
 * @module db
 * What every PostgreSQL-backed store shares: a pool from a URL with the password from an environment
 * variable or a file (never in the URL, on a command line or in a log), one-transaction helper, and
 * versioned schema migrations per component applied under an advisory lock (replicas starting at
 * once do not race). Imports `pg`; the SQLite engines do not need this folder.
 */
export { createPool, poolConfig, readPassword, redactUrl, withTransaction, type PgSettings } from './pool.js';
export { migrate, type Migration, type MigrateResult } from './migrate.js';
