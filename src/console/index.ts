/**
 * @module console
 * The web console: server-rendered pages over a `ConsoleBackend` the registry implements, served
 * by the registry server under `/` (see docs/console.md).
 */
export { Console, isConsolePath, SESSION_COOKIE, LOGIN_CSRF_COOKIE, type ConsoleOptions } from './console.js';
export type {
  ArtifactView,
  BenchReportView,
  ConversionState,
  ConversionView,
  ConversionsView,
  ConsoleBackend,
  P2pView,
  PreheatJobView,
  DeliveryView,
  QuotaView,
  WebhookPolicyView,
  ConsoleUser,
  NewRobot,
  ProjectView,
  RepositoryView,
  RobotView,
  Viewer,
} from './backend.js';
