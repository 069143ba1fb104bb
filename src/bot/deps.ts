import type { CommandMenus } from '../core/chat.js';
import type { FleetView } from '../core/fleet-view.js';
import type { ManagedBots } from '../core/managed-bots.js';
import type { Fleet } from '../core/ports/fleet.js';
import type { RunCommand } from '../core/ports/run-command.js';
import type { SecretStore } from '../core/ports/secret-store.js';
import type { SecretKindName } from '../core/secret-kinds.js';
import type { Queues } from '../jobs/queues.js';
import type { AssistantBots } from '../store/assistant-bots.js';
import type { AuditTrail } from '../store/audit.js';
import type { Members } from '../store/members.js';
import type { PendingSecrets } from '../store/pending-secrets.js';
import type { Plans } from '../store/plans.js';
import type { IntakeDeps } from './intake/intake.js';
import type { Registry } from './registry.js';

/** What commands may use. The composition root fills it; commands never build clients. */
export interface BotDeps {
  registry: Registry<BotDeps>;
  queues: Queues;
  members: Members;
  /** Invited, or on the static allow-list. */
  isMember(userId: string): Promise<boolean>;
  secrets: SecretStore;
  pending: PendingSecrets;
  intake: IntakeDeps;
  fleet: Fleet;
  /** Fleet reads for people (`/fleet`, plans), shared with the dashboard; not for acting on. */
  fleetView: FleetView;
  runCommand: RunCommand;
  plans: Plans;
  auditTrail: AuditTrail;
  assistantBots: AssistantBots;
  /**
   * What the Telegram adapter offers once it started: command menus, and managed bots when Telegram
   * lets fleetbot's bot manage bots (getMe `can_manage_bots`). Empty without Telegram.
   */
  telegram: { menus?: CommandMenus; managedBots?: ManagedBots };
  settings: {
    inviteTtlMs: number;
    setTimeoutMs: number;
    botUsername?: string;
    region: string;
    requiredSecrets: readonly SecretKindName[];
    serviceName: string;
    restartDocument: string;
    /** The IAM managed policy /session tells admins they need: infra's <Prefix>-<Env>-session-operator. */
    sessionOperatorPolicy: string;
    /** Where scheduled runs post their summaries. */
    reportChannelId?: string;
    rollout: {
      defaultConcurrency: string;
      defaultMaxErrors: string;
      planTtlMs: number;
      twoPersonRule: boolean;
      scanSchedulesNeedApproval: boolean;
    };
  };
  now: () => Date;
}
