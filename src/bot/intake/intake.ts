import type { Caller } from '../../core/caller.js';
import type { OriginalMessage, Reply } from '../../core/chat.js';
import { fingerprint } from '../../core/fingerprint.js';
import type { Fleet, FleetInstance } from '../../core/ports/fleet.js';
import type { SecretStore } from '../../core/ports/secret-store.js';
import { SecretStoreError } from '../../core/ports/secret-store.js';
import {
  findKind,
  maxParameterBytes,
  recognizeKind,
  type SecretKind,
  type SecretKindName,
  secretKinds,
} from '../../core/secret-kinds.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { Pacer, WindowLimit } from '../../store/rate-limits.js';
import type { LiveChecks } from './live-checks.js';

export interface IntakeDeps {
  secrets: SecretStore;
  /** Global PutParameter pacing shared by every bot process. */
  putPacer: Pacer;
  perUserLimit: WindowLimit;
  liveChecks: LiveChecks;
  log: Logger;
  now(): Date;
  /** The member's server: every store while one exists binds the parameter to it. */
  fleet: Pick<Fleet, 'findForUser'>;
  metrics?: Pick<Metrics, 'secretStored'>;
}

export interface IntakeRequest {
  caller: Caller;
  value: string;
  /** Set by `/set <kind>`; otherwise the kind is recognized from the value's shape. */
  kind?: SecretKindName;
  original: OriginalMessage;
  reply: Reply;
}

export type IntakeOutcome = 'stored' | 'rejected' | 'failed';

/**
 * A secret whose message stays in the chat has leaked: storing it would make a value its owner must
 * revoke anyway look safe. So nothing is stored and they are told where to revoke it.
 */
export function notDeletedAnswer(kind: SecretKind | undefined): string {
  const what = kind ? `this ${kind.name}` : 'this secret';
  const where = kind ? `at ${kind.revokeAt}` : 'wherever it was issued';
  return `⚠️ I could not delete your message, so I did not store ${what}: it is still visible in this chat. Revoke it ${where}, delete that message yourself, then send me a new one.`;
}

/** A guest's pasted text, here and in the dispatcher's bounded answer to guests. */
export const guestTextAnswer = 'Only members can store secrets here. Ask an admin for an invite.';

export const kindList = secretKinds.map((k) => `• ${k.name}: ${k.purpose}`).join('\n');

/**
 * Takes one pasted secret: delete the message first (on every path), validate, check it with its
 * issuer, then write it to Parameter Store. The value is passed to nothing but the store and the
 * live check; logs carry user, kind and fingerprint only. A message that could not be deleted stops
 * everything: the value is neither checked nor stored, and earlier values stay as they were.
 */
export async function takeSecret(request: IntakeRequest, deps: IntakeDeps): Promise<IntakeOutcome> {
  const deleted = await request.original.delete();
  const answer = async (text: string) => {
    await request.reply.send(text);
  };
  const { caller } = request;
  const value = request.value.trim();
  const log = deps.log.child({ user: caller.userId, kind: request.kind ?? null });
  if (!deleted) {
    const kind = request.kind ? findKind(request.kind) : recognizeKind(value);
    log.warn({ kind: kind?.name ?? null }, 'secret not stored: its message could not be deleted');
    await answer(notDeletedAnswer(kind));
    return 'rejected';
  }

  if (caller.role !== 'user') {
    await answer(guestTextAnswer);
    return 'rejected';
  }
  if (!(await deps.perUserLimit.hit(caller.userId))) {
    await answer(
      'That is a lot of secrets in a short time. Wait a minute and send it again. Nothing was stored.',
    );
    return 'rejected';
  }
  if (value === '') {
    await answer('That message was empty. Nothing was stored.');
    return 'rejected';
  }
  if (Buffer.byteLength(value) > maxParameterBytes) {
    await answer(
      `That is longer than ${maxParameterBytes} bytes, more than any secret I keep. Nothing was stored.`,
    );
    return 'rejected';
  }
  const kind: SecretKind | undefined = request.kind ? findKind(request.kind) : recognizeKind(value);
  if (!kind) {
    await answer(
      `I don't recognize this, so I stored nothing. Use /set <kind> and then send the value. Kinds:\n${kindList}`,
    );
    return 'rejected';
  }
  if (value.length > kind.maxLength || !kind.shape.test(value)) {
    await answer(`That does not look like a ${kind.name} (${kind.purpose}). Nothing was stored.`);
    return 'rejected';
  }

  const print = fingerprint(value);
  const check = await deps.liveChecks.check(kind, value);
  if ('ok' in check && !check.ok) {
    log.info({ kind: kind.name, fingerprint: print, check: 'refused' }, 'secret refused by live check');
    await answer(`I did not store this ${kind.name}: ${check.reason}.`);
    return 'rejected';
  }

  const stored = await storeSecret(deps, caller.userId, kind.name as SecretKindName, value);
  if (!stored.ok) {
    await answer(storeFailureText[stored.reason]);
    return 'failed';
  }
  const when = deps.now().toISOString().replace('T', ' ').slice(0, 16);
  const note = 'unverified' in check ? `\nNot checked live: ${check.unverified}.` : '';
  await answer(
    `Stored your ${kind.name} (${stored.fingerprint}) at ${when} UTC. I deleted your message.${note}`,
  );
  await offerRestart(stored.server, request.reply);
  return 'stored';
}

export type StoreOutcome =
  | { ok: true; fingerprint: string; server?: FleetInstance }
  | { ok: false; reason: 'throttled' | 'unavailable' | 'unbound' };

export const storeFailureText: Record<Exclude<StoreOutcome, { ok: true }>['reason'], string> = {
  throttled: 'AWS is busy right now and nothing was saved. Send it again in a minute.',
  unavailable:
    'I could not save it to the secret store, so nothing was saved. An admin has the details; try again later.',
  unbound:
    'I saved it, but could not give your server access to it yet, so your assistant cannot use it. Send it again in a minute.',
};

/**
 * The one way a secret is written: paced, stored, then bound to the member's server (if one exists)
 * before anybody is told it is stored, so the server can always read what it was told about.
 */
export async function storeSecret(
  deps: IntakeDeps,
  userId: string,
  kind: SecretKindName,
  value: string,
): Promise<StoreOutcome> {
  const print = fingerprint(value);
  const log = deps.log.child({ user: userId, kind, fingerprint: print });
  try {
    await deps.putPacer.wait();
    await deps.secrets.put(userId, kind, value);
  } catch (error) {
    const reason =
      error instanceof SecretStoreError && error.reason === 'throttled' ? 'throttled' : 'unavailable';
    log.warn({ reason, err: String(error) }, 'secret not stored');
    return { ok: false, reason };
  }
  log.info('secret stored');
  deps.metrics?.secretStored(kind);
  let server: FleetInstance | undefined;
  try {
    server = await deps.fleet.findForUser(userId);
    if (server) await deps.secrets.bindToInstance(userId, [kind], server.arn);
  } catch (error) {
    log.warn({ err: String(error) }, 'secret stored but not bound to the server');
    return { ok: false, reason: 'unbound' };
  }
  if (server) log.info({ instance: server.id }, 'secret bound to the server');
  return { ok: true, fingerprint: print, server };
}

/** A running assistant read the old value when it started; a restart reads the new one. */
export async function offerRestart(server: FleetInstance | undefined, reply: Reply): Promise<void> {
  if (server?.state === 'running')
    await reply.confirm(
      'Your server still uses the old value. Restart your assistant so it reads the new one?',
      '/restart',
      { confirm: 'Restart', cancel: 'Later' },
    );
}
