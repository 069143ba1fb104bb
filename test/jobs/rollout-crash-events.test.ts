/** The same suite as ./rollout-crash.test.ts, with Run Command's completion events on (see test/support/rollout-events.ts). */
process.env.FLEETBOT_TEST_ROLLOUT_EVENTS = '1';
await import('./rollout-crash.test.js');
