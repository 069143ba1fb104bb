import type { SecretKindName } from '../secret-kinds.js';

/**
 * EC2 as the fleet: what jobs and chat may ask of it, in domain terms. src/aws/fleet.ts implements it;
 * no SDK type crosses this line.
 */

export type InstanceState = 'pending' | 'running' | 'stopping' | 'stopped' | 'shutting-down' | 'terminated';

export interface FleetInstance {
  id: string;
  arn: string;
  userId: string;
  state: InstanceState;
  /** When it was last stopped or terminated by a user, where EC2 says (its StateTransitionReason). */
  stateChangedAt?: Date;
  launchedAt?: Date;
  version?: string;
  env?: string;
  tags: Record<string, string | undefined>;
}

export interface InstanceHealth {
  state: InstanceState;
  /** `ok`, `initializing`, `impaired`, `insufficient-data` or `not-applicable`. */
  system: string;
  instance: string;
}

/**
 * What a member's server needs at its first boot. The fleet renders it into the instance's UserData
 * (src/aws/userdata.ts), so the script and its encoding stay with the EC2 side.
 */
export interface MemberBootstrap {
  parameterPrefix: string;
  /** Numeric Telegram user id. */
  userId: string;
  /** Which of the user's parameters the instance reads; each becomes one line of the env file. */
  kinds: readonly SecretKindName[];
  /** The systemd unit that runs the assistant (`assistant` or `assistant.service`). */
  serviceName: string;
  /** Operator config, run as root before the unit starts; the openclaw profile when not set. */
  installCommand?: string;
  version?: string;
}

interface LaunchBase {
  userId: string;
  /**
   * Derived from the job, so a retried job cannot launch a second instance on real AWS. It is the
   * base of each placement's own ClientToken (launchClientToken): a request whose parameters differ
   * never reuses a token, and a retried job sends the same token for the same placement.
   */
  clientToken: string;
  version?: string;
  /**
   * Told while the launch waits for the instance profile to become usable (with how long so far),
   * and with undefined once RunInstances accepted it.
   */
  onProfileWait?(waitedMs: number | undefined): void;
}

/** A launch with the member's bootstrap, or with UserData already rendered and base64-encoded. */
export type LaunchRequest = LaunchBase &
  ({ bootstrap: MemberBootstrap; userDataBase64?: never } | { userDataBase64: string; bootstrap?: never });

/** A launch whose UserData is rendered: what RunInstances is sent. */
export type RenderedLaunch = LaunchBase & { userDataBase64: string };

/** Where an instance may be launched: one instance type (none with a launch template) in one subnet. */
export interface Placement {
  instanceType?: string;
  subnetId?: string;
}

export type LaunchFailure =
  | 'no-capacity'
  | 'bad-image'
  | 'limit'
  /** The instance profile was not accepted for as long as the launch waited for it. */
  | 'profile-not-ready'
  /** The ClientToken was used before with other parameters: AWS launched nothing for this request. */
  | 'token-mismatch'
  | 'other';

/** Launch failures a person can act on, told apart from everything else. */
export class LaunchError extends Error {
  constructor(
    readonly reason: LaunchFailure,
    readonly awsCode: string,
    /** The placements that had no capacity, in the order they were tried (no-capacity only). */
    readonly tried: readonly Placement[] = [],
    /** How long the launch waited for the instance profile: its limit (profile-not-ready only). */
    readonly waitedMs = 0,
  ) {
    super(`launch failed: ${reason} (${awsCode})`);
    this.name = 'LaunchError';
  }
}

/** What EC2 says, right now, about an instance a member's parameters are about to be bound to. */
export type OwnerCheck =
  /** EC2 does not know the id (or does not show it yet, right after RunInstances). */
  | { verdict: 'unknown' }
  /** Not this member's: see ownershipProblem. */
  | { verdict: 'foreign'; problem: string }
  /** Theirs, but terminated or on its way. */
  | { verdict: 'gone'; instance: FleetInstance }
  | { verdict: 'owned'; instance: FleetInstance };

export interface Fleet {
  /**
   * Describes this one instance and applies ownershipProblem to its tags: the check made before a
   * member's parameters are bound to it, whatever told us its id (a job record in Redis included).
   */
  checkOwner(instanceId: string, userId: string): Promise<OwnerCheck>;
  /** The member's instance that is not terminated (or on its way), if any. */
  findForUser(userId: string): Promise<FleetInstance | undefined>;
  get(instanceId: string): Promise<FleetInstance | undefined>;
  list(): Promise<FleetInstance[]>;
  /**
   * The state of each of these fleet instances now, in one DescribeInstances per 200 ids. An id
   * missing from the answer is gone: EC2 lists terminated instances for about an hour, then not.
   */
  states(instanceIds: readonly string[]): Promise<Map<string, InstanceState>>;
  launch(request: LaunchRequest): Promise<FleetInstance>;
  /**
   * One DescribeInstanceStatus per 100 ids, however many provisions are waiting. An id EC2 does not
   * know yet (just launched) gets no entry, and costs the others nothing but one more call.
   */
  health(instanceIds: readonly string[]): Promise<Map<string, InstanceHealth>>;
  stop(instanceId: string): Promise<void>;
  start(instanceId: string): Promise<void>;
  terminate(instanceId: string): Promise<void>;
}
