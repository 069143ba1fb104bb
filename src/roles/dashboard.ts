import { startHttp } from '../http/server.js';
import type { RoleContext, StartedRole } from './context.js';

export interface StartedDashboard extends StartedRole {
  port: number;
}

/** The dashboard role: health, metrics, the job dashboard and the fleet page. */
export async function startDashboardRole(ctx: RoleContext): Promise<StartedDashboard> {
  const { config, aws } = ctx;
  const http = await startHttp({
    ...config.dashboard,
    redis: ctx.redis,
    prefix: config.redis.prefix,
    probeAws: aws.probe,
    listInstances: () => aws.fleetView.instances(),
    recentAudit: () => ctx.auditTrail.recent(50),
    metrics: ctx.metrics,
    log: ctx.log.child({ role: 'dashboard' }),
  });
  return { port: http.port, stop: () => http.close() };
}
