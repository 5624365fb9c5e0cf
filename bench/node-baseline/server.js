// A baseline for `loadgen fanout --raw-ws`: the least a WebSocket server
// must do to serve that scenario, in plain Node.js with the `ws` package.
// One room, any token accepted, nothing stored: each `send` gets the next
// seq, an `ack` to its sender and a `message` event to every connection
// (the sender's included), encoded once. Frames follow PROTOCOL.md.
//
//   PORT=9090 node server.js
'use strict';

const { WebSocketServer } = require('ws');

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 9090);
const wss = new WebSocketServer({ host, port, path: '/ws', maxPayload: 64 * 1024 });

let seq = 0;
let nextUser = 0;

wss.on('connection', (socket, request) => {
  // Like the gateway, a connection is refused without a bearer token; its
  // value is not checked.
  if (!/^Bearer \S+/.test(request.headers.authorization || '')) {
    socket.close(4001, 'unauthorized');
    return;
  }
  const userId = `node-${nextUser++}`;
  socket.send(JSON.stringify({
    type: 'ready',
    session_id: userId,
    user: { id: userId, username: userId, display_name: userId },
    rooms: [],
    notifications: [],
  }));
  socket.on('message', (data) => {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      socket.send(JSON.stringify({ type: 'error', code: 'invalid_argument', message: 'not JSON' }));
      return;
    }
    if (frame.type === 'ping') {
      socket.send(JSON.stringify({ type: 'pong', ref: frame.ref }));
      return;
    }
    if (frame.type !== 'send' || typeof frame.text !== 'string') {
      socket.send(JSON.stringify({ type: 'error', ref: frame.ref, code: 'invalid_argument', message: 'only send is served' }));
      return;
    }
    seq += 1;
    const message = {
      id: `${seq}`,
      room: frame.room,
      seq,
      sender_id: userId,
      sender_name: userId,
      kind: 'text',
      text: frame.text,
      client_msg_id: frame.client_msg_id,
      created_at: new Date().toISOString(),
      deleted: false,
    };
    socket.send(JSON.stringify({ type: 'ack', ref: frame.ref, message }));
    const event = JSON.stringify({ type: 'message', room: frame.room, message });
    for (const client of wss.clients) {
      if (client.readyState === 1) client.send(event);
    }
  });
});

wss.on('listening', () => console.log(`node baseline on ws://${host}:${port}/ws`));

const stop = () => wss.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
