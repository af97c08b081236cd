/**
 * @module httpx
 * What every Ferry server shares at its door: a route table, bounded JSON bodies, the one
 * ErrorCode → HTTP status table with the one `{code, message}` error envelope, a JSON client that
 * decodes it back into FerryErrors, and owner-only unix sockets for node-local APIs.
 */
export { assertSocketFree, bindPrivate, listenPrivate } from './unix.js';
export { serveMetrics, type MetricsListener } from './metrics-listener.js';
export { Router, requestUrl, type Handler, type Params, type RouterOptions } from './router.js';
export { readBody, readJson, parseJson, issueList, type JsonOptions } from './body.js';
export {
  HTTP_STATUS,
  PayloadTooLarge,
  MethodNotAllowed,
  statusOf,
  sendJson,
  sendError,
  type ErrorEnvelope,
  type SendErrorOptions,
} from './errors.js';
export { JsonClient, decodeError, codeOfStatus, type JsonClientOptions, type DecodeOptions, type RawAnswer } from './client.js';
