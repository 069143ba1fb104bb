import type { Reply } from '../../core/chat.js';
import { UserError } from '../../core/errors.js';
import type { FleetInstance } from '../../core/ports/fleet.js';
import { SecretStoreError } from '../../core/ports/secret-store.js';
import { secretKinds } from '../../core/secret-kinds.js';
import { noArgs } from '../args.js';
import { defineCommand } from '../command.js';
import type { BotDeps } from '../deps.js';
import { checkProvision, describeInstance, requestProvision } from './provisioning.js';

/** Commands a member runs on their own server; the instance is always found by their own user id. */

async function ownInstance(userId: string, deps: BotDeps): Promise<FleetInstance> {
  const instance = await deps.fleet.findForUser(userId);
  if (!instance) throw new UserError('You have no server yet. Send /provision to get one.');
  return instance;
}

export const provision = defineCommand<BotDeps, typeof noArgs>({
  name: 'provision',
  summary: 'get your own server, and follow it until it is ready',
  args: noArgs,
  requires: 'user',
  limit: 'launch',
  check: ({ caller }, deps) => checkProvision(caller.userId, 'provision', caller, deps),
  run: ({ caller, reply, audit, launched }, deps) =>
    requestProvision(caller.userId, 'provision', caller, reply, deps, audit, launched),
});

export const status = defineCommand<BotDeps, typeof noArgs>({
  name: 'status',
  readOnly: true,
  summary: "show your server's state, checks, version and uptime",
  args: noArgs,
  requires: 'user',
  async run({ caller, reply }, deps) {
    await reply.send(await describeInstance(await ownInstance(caller.userId, deps), deps));
  },
});

export const stop = defineCommand<BotDeps, typeof noArgs>({
  name: 'stop',
  summary: 'stop your server (it keeps its disk; /start brings it back)',
  args: noArgs,
  requires: 'user',
  limit: 'server',
  async run({ caller, reply, audit }, deps) {
    const instance = await ownInstance(caller.userId, deps);
    if (instance.state !== 'running') throw new UserError(`Your server is ${instance.state}, not running.`);
    await deps.fleet.stop(instance.id);
    audit({ outcome: `stopping ${instance.id}` });
    await reply.send(`Stopping your server ${instance.id}. Send /start to bring it back.`);
  },
});

export const restart = defineCommand<BotDeps, typeof noArgs>({
  name: 'restart',
  summary: 'restart your assistant; it reads your current secrets as it starts',
  args: noArgs,
  requires: 'user',
  limit: 'server',
  async run({ caller, reply, audit }, deps) {
    const instance = await ownInstance(caller.userId, deps);
    if (instance.state !== 'running')
      throw new UserError(`Your server is ${instance.state}; /start it first.`);
    const commandId = await restartAssistant(instance, caller.userId, reply, deps);
    audit({ commandIds: commandId, outcome: `restart on ${instance.id}` });
  },
});

/**
 * Restarts the assistant's unit, whose start reads the member's secrets from Parameter Store again,
 * and has a worker edit the message with how the start went.
 */
export async function restartAssistant(
  instance: FleetInstance,
  userId: string,
  reply: Reply,
  deps: BotDeps,
): Promise<string> {
  const commandId = await deps.runCommand.send(
    [instance.id],
    deps.settings.restartDocument,
    { service: [deps.settings.serviceName] },
    `restart:${userId}`,
  );
  const message = await reply.send(`Restarting your assistant on ${instance.id} (command ${commandId}).`);
  // The restart is sent either way; without Redis only its outcome goes unreported.
  if (message)
    await deps.queues
      .followRestart({ userId, instanceId: instance.id, commandId, message })
      .catch((err: unknown) => deps.intake.log.warn({ err: String(err) }, 'restart outcome not followed'));
  return commandId;
}

export const destroy = defineCommand<BotDeps, typeof noArgs>({
  name: 'destroy',
  summary: 'terminate your server for good',
  args: noArgs,
  requires: 'user',
  limit: 'command',
  async run({ caller, reply }, deps) {
    const instance = await ownInstance(caller.userId, deps);
    await reply.confirm(
      `Terminate your server ${instance.id}? Its disk is deleted with it; this cannot be undone.`,
      '/destroy-confirmed',
      { confirm: 'Terminate it' },
    );
  },
});

export const destroyConfirmed = defineCommand<BotDeps, typeof noArgs>({
  name: 'destroy-confirmed',
  summary: 'terminate your server after confirmation',
  args: noArgs,
  requires: 'user',
  limit: 'server',
  hidden: true,
  async run({ caller, reply, audit }, deps) {
    const instance = await ownInstance(caller.userId, deps);
    await deps.fleet.terminate(instance.id);
    // The server is going either way: the member hears that, and what is left if unbinding failed.
    const unbindFailure = await unbindAfterTerminate(caller.userId, deps);
    audit({
      outcome: `terminated ${instance.id}${unbindFailure ? `; unbind failed (${unbindFailure})` : ''}`,
    });
    await reply.send(
      unbindFailure
        ? `Your server ${instance.id} is being terminated. Your stored secrets could not be unlinked from it (AWS answered ${unbindFailure}); no other server can read them, and your next server links them to itself.`
        : `Your server ${instance.id} is being terminated.`,
    );
    await reply.confirm('Delete your stored secrets too?', '/forget-all-confirmed', {
      confirm: 'Delete them',
      cancel: 'Keep them',
    });
  },
});

export const forgetAllConfirmed = defineCommand<BotDeps, typeof noArgs>({
  name: 'forget-all-confirmed',
  summary: 'delete every stored secret after confirmation',
  args: noArgs,
  requires: 'user',
  limit: 'command',
  hidden: true,
  async run({ caller, reply, audit }, deps) {
    let removed = 0;
    for (const kind of secretKinds) if (await deps.secrets.remove(caller.userId, kind.name)) removed++;
    await deps.assistantBots.forgetStoredToken(caller.userId);
    audit({ outcome: `removed ${removed}` });
    await reply.send(
      removed > 0
        ? `Deleted ${removed} stored secret${removed > 1 ? 's' : ''}.`
        : 'You had no secrets stored.',
    );
  },
});

/**
 * Removes the InstanceArn tags after a terminate, and says what AWS answered when that failed: the
 * tag then names an instance that no longer runs, which no other instance's ARN can match.
 */
export async function unbindAfterTerminate(userId: string, deps: BotDeps): Promise<string | undefined> {
  try {
    await deps.secrets.unbindFromInstance(userId, deps.settings.requiredSecrets);
    return undefined;
  } catch (error) {
    const code = error instanceof SecretStoreError ? error.awsCode : 'an unexpected error';
    deps.intake.log.warn({ user: userId, err: code }, 'unbinding secrets after terminate failed');
    return code;
  }
}

/** `/start` without an invite code: a member's stopped server comes back through the readiness stages. */
export async function stoppedServer(userId: string, deps: BotDeps): Promise<boolean> {
  return (await deps.fleet.findForUser(userId))?.state === 'stopped';
}
