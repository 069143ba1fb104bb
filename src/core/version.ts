/**
 * The one pattern a deploy version must match, checked by the bot, again by the worker, and by the
 * deploy document's allowedPattern (infra/fleetbot.yaml) before it reaches an instance.
 */
export const versionPattern =
  /^v?(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})\.(0|[1-9]\d{0,5})(-[0-9A-Za-z.-]{1,20})?$/;

export function isVersion(text: string): boolean {
  return versionPattern.test(text);
}
