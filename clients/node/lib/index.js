'use strict';
/**
 * sluice-worker: Node.js worker library for the sluice gateway.
 *
 *   const { serve } = require('sluice-worker');
 *   serve((req, res) => res.end('Hello, world!\n'));   // or serve(expressApp)
 *
 * WebSockets, with the server API of the ws package:
 *   const server = http.createServer(app);
 *   const wss = new WebSocketServer({ server });
 *   wss.on('connection', (ws) => ws.on('message', (data) => ws.send(data)));
 *   serve(server);                                      // instead of server.listen()
 */
const protocol = require('./protocol');
const { Worker, Stream, parseAddress, parseAddressList, LIB } = require('./worker');
const { RemoteWorker, isRemote } = require('./remote');
const { serve, handleStream, StreamSocket } = require('./http');
const { WebSocket, WebSocketServer } = require('./websocket');

/** Raise (or lower) the request-body limit of one request (LIMIT frame). */
function setBodyLimit(req, bytes) {
  if (!req || !req.sluice) throw new TypeError('not a sluice request');
  return req.sluice.setLimit(bytes);
}

module.exports = {
  serve,
  setBodyLimit,
  WebSocket,
  WebSocketServer,
  Worker,
  RemoteWorker,
  isRemote,
  Stream,
  StreamSocket,
  handleStream,
  parseAddress,
  parseAddressList,
  protocol,
  LIB,
  RESET: protocol.RESET,
  CANCEL: protocol.CANCEL,
};
