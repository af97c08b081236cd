/**
 * @module httpx
 * What every Ferry server shares at its door: owner-only unix sockets for node-local APIs.
 */
export { assertSocketFree, bindPrivate, listenPrivate } from './unix.js';
