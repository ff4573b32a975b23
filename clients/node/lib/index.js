'use strict';
/**
 * sluice-worker: Node.js worker library for the sluice gateway.
 *
 *   const { serve } = require('sluice-worker');
 *   serve((req, res) => res.end('Hello, world!\n'));   // or serve(expressApp)
 */
const protocol = require('./protocol');
const { Worker, Stream, parseAddress, LIB } = require('./worker');
const { serve, handleStream, StreamSocket } = require('./http');

/** Raise (or lower) the request-body limit of one request (LIMIT frame). */
function setBodyLimit(req, bytes) {
  if (!req || !req.sluice) throw new TypeError('not a sluice request');
  return req.sluice.setLimit(bytes);
}

module.exports = {
  serve,
  setBodyLimit,
  Worker,
  Stream,
  StreamSocket,
  handleStream,
  parseAddress,
  protocol,
  LIB,
  RESET: protocol.RESET,
  CANCEL: protocol.CANCEL,
};
