import { checkHeartbeat, heartbeatEnvKey } from './heartbeat.js';

/**
 * The image's HEALTHCHECK (`node dist/healthcheck.js`): exits 0 when the fleetbot process in this
 * container is alive, 1 when it is not (Docker gives 2 no meaning of its own). It reads the heartbeat
 * that process writes (src/heartbeat.ts says why a file, and not a role setting or a server in every
 * role) and asks the HTTP servers listed there. Light on purpose: it runs every 30 s, so it loads
 * neither the configuration nor any SDK.
 */
const result = await checkHeartbeat(process.env[heartbeatEnvKey], Date.now());
(result.healthy ? process.stdout : process.stderr).write(`${result.message}\n`);
// A keep-alive socket from a probe would hold the check open for seconds after its answer.
process.exit(result.healthy ? 0 : 1);
