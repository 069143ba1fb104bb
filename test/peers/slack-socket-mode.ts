import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import {
  type ButtonPress,
  blockActionsPayload,
  type SlashCommandFields,
  slashCommandPayload,
} from './slack-signer.js';
import { type Waiters, waitOn } from './wait-on.js';

/**
 * Slack's Socket Mode on the fake Slack's own HTTP server, for `@slack/socket-mode` (Bolt's
 * SocketModeReceiver). `apps.connections.open` itself, and its token-type check, are in slack-api.ts.
 *
 * Behaviour modelled on Slack (documented where it is a choice):
 * - `apps.connections.open` mints a single-use ticket: `ws://127.0.0.1:PORT/link/?ticket=…&app_id=…`
 *   (Slack: `wss://wss-primary.slack.com/link/?ticket=…&app_id=…`). An unknown or already used ticket
 *   gets HTTP 401 on the upgrade (a choice: Slack documents no answer for it).
 * - On connect the server sends `{type:'hello', num_connections, debug_info, connection_info:{app_id}}`;
 *   @slack/socket-mode reports itself connected only then.
 * - Envelopes are `{envelope_id, type, payload, accepts_response_payload}`: `slash_commands` carry the
 *   command's fields (all strings, as in the HTTP form) and accept a response payload; `interactive`
 *   `block_actions` carry the HTTP payload and do not.
 * - The client acks with `{envelope_id, payload?}`; each ack is recorded with its arrival time. Slack's
 *   retry of an unacked envelope after 3 s is not modelled: tests assert the delay instead.
 * - `disconnect()` sends `{type:'disconnect', reason, debug_info}` as Slack does before recycling a
 *   connection, and leaves the socket open for the client to close; `drop()` cuts the TCP connections
 *   without a close frame, like a network failure.
 * - ws answers the client's pings with pongs, as Slack does; the server sends no pings of its own.
 */

export type EnvelopeType = 'slash_commands' | 'interactive' | 'events_api';

export interface SocketEnvelope {
  envelope_id: string;
  type: EnvelopeType;
  payload: Record<string, unknown>;
  accepts_response_payload: boolean;
  connectionId: number;
  sentAt: number;
}

export interface SocketAck {
  envelope_id: string;
  /** As the client sent it; absent when the ack had none. */
  payload?: unknown;
  connectionId: number;
  at: number;
  /** Milliseconds since the envelope was sent; undefined when the fake never sent that envelope_id. */
  delayMs: number | undefined;
}

export interface SocketConnection {
  id: number;
  /** The app-level token that opened the ticket this connection used. */
  token: string;
  openedAt: number;
  closedAt: number | undefined;
  /** 1000 when the client closed normally, 1006 when the socket was cut (e.g. by `drop()`). */
  closeCode: number | undefined;
  /** Messages the server sent on it, oldest first (hello first). */
  sent: Record<string, unknown>[];
  /** Messages the client sent on it, parsed; `{raw}` for any that were not JSON. */
  received: unknown[];
}

export interface FakeSocketMode {
  /** Every connection since the last reset, oldest first, plus those still open from before it. */
  connections(): SocketConnection[];
  open(): SocketConnection[];
  /** Resolves with the first connection (past or future, opened or closed since) matching. */
  waitForConnection(
    predicate: (c: SocketConnection) => boolean,
    timeoutMs?: number,
  ): Promise<SocketConnection>;
  /** Sends an envelope on the newest open connection (or `connectionId`); throws when none is open. */
  send(
    type: EnvelopeType,
    payload: Record<string, unknown>,
    options?: { acceptsResponsePayload?: boolean; connectionId?: number },
  ): SocketEnvelope;
  /** A `slash_commands` envelope with the fields the HTTP helper would post. */
  slashCommand(fields: SlashCommandFields, options?: { connectionId?: number }): SocketEnvelope;
  /** An `interactive` envelope with the `block_actions` payload the HTTP helper would post. */
  blockActions(press: ButtonPress, options?: { connectionId?: number }): SocketEnvelope;
  envelopes(): SocketEnvelope[];
  acks(envelopeId?: string): SocketAck[];
  waitForAck(envelopeId: string, timeoutMs?: number): Promise<SocketAck>;
  /** Slack's `disconnect` message on every open connection; the client is expected to close and reconnect. */
  disconnect(reason?: 'refresh_requested' | 'warning' | 'link_disabled'): void;
  /** Cuts every open connection without a close frame. */
  drop(): void;
}

export interface SocketModeServer extends FakeSocketMode {
  /** The body of a successful `apps.connections.open` for this app-level token. */
  openConnection(token: string): { ok: true; url: string };
  reset(): void;
  close(): void;
}

const HOST = 'applink-fake-1';

export function attachSocketMode(
  server: Server,
  options: { baseWsUrl: string; appId: string; waiters: Waiters },
): SocketModeServer {
  const { appId, waiters } = options;
  const wss = new WebSocketServer({ noServer: true });
  const tickets = new Map<string, { token: string; used: boolean }>();
  const sockets = new Map<number, WebSocket>();
  let connections: SocketConnection[] = [];
  let envelopes: SocketEnvelope[] = [];
  let acks: SocketAck[] = [];
  let connectionCounter = 0;

  const announce = (event: string, item: unknown) => waiters.events.emit(event, item);

  const sendOn = (id: number, message: Record<string, unknown>) => {
    const socket = sockets.get(id);
    const connection = connections.find((c) => c.id === id);
    if (!socket || !connection) throw new Error(`fake Slack: Socket Mode connection ${id} is not open`);
    socket.send(JSON.stringify(message));
    connection.sent.push(message);
  };

  const onMessage = (connection: SocketConnection, data: RawData) => {
    const bytes = Buffer.isBuffer(data)
      ? data
      : Array.isArray(data)
        ? Buffer.concat(data)
        : Buffer.from(data);
    const text = bytes.toString('utf8');
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      message = { raw: text };
    }
    connection.received.push(message);
    if (typeof message !== 'object' || message === null) return;
    const { envelope_id: envelopeId } = message as { envelope_id?: unknown };
    if (typeof envelopeId !== 'string') return;
    const at = Date.now();
    const sent = envelopes.find((e) => e.envelope_id === envelopeId);
    const ack: SocketAck = {
      envelope_id: envelopeId,
      ...('payload' in message ? { payload: message.payload } : {}),
      connectionId: connection.id,
      at,
      delayMs: sent ? at - sent.sentAt : undefined,
    };
    acks.push(ack);
    announce('socket-ack', ack);
  };

  const refuse = (socket: Duplex, status: string) => {
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== '/link/') return refuse(socket, '404 Not Found');
    const ticket = tickets.get(url.searchParams.get('ticket') ?? '');
    if (!ticket || ticket.used) return refuse(socket, '401 Unauthorized');
    ticket.used = true;
    wss.handleUpgrade(req, socket, head, (ws) => {
      connectionCounter += 1;
      const connection: SocketConnection = {
        id: connectionCounter,
        token: ticket.token,
        openedAt: Date.now(),
        closedAt: undefined,
        closeCode: undefined,
        sent: [],
        received: [],
      };
      connections.push(connection);
      sockets.set(connection.id, ws);
      ws.on('message', (data) => onMessage(connection, data));
      ws.on('error', () => {}); // a cut socket also closes; the close below records it
      ws.on('close', (code) => {
        sockets.delete(connection.id);
        connection.closedAt = Date.now();
        connection.closeCode = code;
        announce('socket-connection', connection);
      });
      sendOn(connection.id, {
        type: 'hello',
        num_connections: sockets.size,
        debug_info: { host: HOST, build_number: 1, approximate_connection_time: 18060 },
        connection_info: { app_id: appId },
      });
      announce('socket-connection', connection);
    });
  };
  server.on('upgrade', onUpgrade);

  const newestOpen = () => {
    const open = connections.filter((c) => sockets.has(c.id));
    const newest = open[open.length - 1];
    if (!newest) throw new Error('fake Slack: no open Socket Mode connection to send an envelope on');
    return newest.id;
  };

  const send: FakeSocketMode['send'] = (type, payload, opts = {}) => {
    const connectionId = opts.connectionId ?? newestOpen();
    const envelope = {
      envelope_id: randomUUID(),
      type,
      payload,
      accepts_response_payload: opts.acceptsResponsePayload ?? type === 'slash_commands',
    };
    const record: SocketEnvelope = { ...envelope, connectionId, sentAt: Date.now() };
    envelopes.push(record);
    sendOn(connectionId, envelope);
    return structuredClone(record);
  };

  const describeConnections = () =>
    connections.map((c) => `#${c.id}${c.closedAt ? `(closed ${c.closeCode})` : '(open)'}`).join(', ') ||
    'no connections';

  return {
    openConnection: (token) => {
      const ticket = randomUUID();
      tickets.set(ticket, { token, used: false });
      return { ok: true, url: `${options.baseWsUrl}/link/?ticket=${ticket}&app_id=${appId}` };
    },
    connections: () => structuredClone(connections),
    open: () => structuredClone(connections.filter((c) => sockets.has(c.id))),
    waitForConnection: (predicate, timeoutMs = 5000) =>
      waitOn(waiters, () => connections, 'socket-connection', predicate, timeoutMs, describeConnections).then(
        (c) => structuredClone(c),
      ),
    send,
    slashCommand: (fields, opts = {}) => send('slash_commands', slashCommandPayload(fields), opts),
    blockActions: (press, opts = {}) => send('interactive', blockActionsPayload(press), opts),
    envelopes: () => structuredClone(envelopes),
    acks: (envelopeId) =>
      structuredClone(envelopeId ? acks.filter((a) => a.envelope_id === envelopeId) : acks),
    waitForAck: (envelopeId, timeoutMs = 5000) =>
      waitOn(
        waiters,
        () => acks,
        'socket-ack',
        (a) => a.envelope_id === envelopeId,
        timeoutMs,
        () => acks.map((a) => a.envelope_id).join(', ') || 'no acks',
      ).then((a) => structuredClone(a)),
    disconnect: (reason = 'refresh_requested') => {
      for (const id of [...sockets.keys()])
        sendOn(id, { type: 'disconnect', reason, debug_info: { host: HOST } });
    },
    drop: () => {
      for (const socket of sockets.values()) socket.terminate();
    },
    reset: () => {
      connections = connections.filter((c) => sockets.has(c.id));
      envelopes = [];
      acks = [];
    },
    close: () => {
      server.off('upgrade', onUpgrade);
      for (const socket of sockets.values()) socket.terminate();
      wss.close();
    },
  };
}
