/** The OCI conformance suite (testing/conformance.ts) on the embedded default: SQLite + a local directory. */
import { conformanceSuite } from './testing/conformance.js';
import { startTestRegistry } from './testing/client.js';

conformanceSuite('SQLite + filesystem', () => startTestRegistry());
