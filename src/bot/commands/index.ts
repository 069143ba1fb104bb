import type { BotDeps } from '../deps.js';
import type { AnyCommand } from '../registry.js';
import { access, rotate } from './assistant-bot.js';
import { audit } from './audit.js';
import { cancelled } from './cancelled.js';
import { destroyFor, destroyForConfirmed } from './destroy-for.js';
import { fleet } from './fleet.js';
import { help } from './help.js';
import { invite } from './invite.js';
import { members, revoke } from './members.js';
import { ping } from './ping.js';
import { approve, reject } from './plan.js';
import { provisionFor } from './provision-for.js';
import { cancel, deploy, job, jobs, patch } from './rollout.js';
import { schedule, schedules, unschedule } from './schedule.js';
import { forget, forgetConfirmed, secrets, set } from './secrets.js';
import { destroy, destroyConfirmed, forgetAllConfirmed, provision, restart, status, stop } from './server.js';
import { session } from './session.js';
import { start } from './start.js';
import { whoami } from './whoami.js';

/** Every command fleetbot serves, in the order /help lists them. */
export const allCommands: AnyCommand<BotDeps>[] = [
  help,
  start,
  whoami,
  set,
  secrets,
  rotate,
  access,
  forget,
  forgetConfirmed,
  provision,
  status,
  stop,
  restart,
  destroy,
  destroyConfirmed,
  forgetAllConfirmed,
  fleet,
  provisionFor,
  destroyFor,
  destroyForConfirmed,
  session,
  deploy,
  patch,
  approve,
  reject,
  jobs,
  job,
  cancel,
  schedule,
  schedules,
  unschedule,
  invite,
  members,
  revoke,
  audit,
  ping,
  cancelled,
];
