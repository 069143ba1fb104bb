/**
 * A fleetbot process started through the real entry (runProcess, dashboard role) that then breaks on
 * purpose, so a test can watch the process-wide handlers: `throw` leaves an exception uncaught,
 * `reject` leaves a promise rejection unhandled. The environment comes from the test.
 */
import { runProcess } from '../../src/main.js';

const what = process.argv[2];
await runProcess(process.env, ['--role', 'dashboard']);
// Secret-shaped text in an error must not reach the log either.
const token = `123456789:${'CANARYcrash'.repeat(4)}`;
if (what === 'throw')
  setTimeout(() => {
    throw new Error(`uncaught on purpose /bot${token}/getMe`);
  }, 0);
if (what === 'reject') {
  void Promise.reject(new Error(`rejected on purpose /bot${token}/getMe`));
  // Runs after the rejection was reported: the process is still up and says so.
  setTimeout(() => process.stdout.write(`${JSON.stringify({ level: 30, msg: 'still running' })}\n`), 0);
}
