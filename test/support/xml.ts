/*
 * The XML answers of AWS query APIs (CloudFormation, IAM, ElastiCache, ELBv2) as plain data, the way
 * the SDKs read them: lists as arrays, every value as text.
 */

import { XMLParser } from 'fast-xml-parser';

/** ElastiCache names the items of its lists; the other query APIs call every item `member`. */
const itemsOf: Record<string, string> = {
  ReplicationGroups: 'ReplicationGroup',
  CacheSubnetGroups: 'CacheSubnetGroup',
  MemberClusters: 'ClusterId',
};
const itemOf = (list: string) => itemsOf[list] ?? 'member';

// Every value stays text (an id or a policy document must not turn into a number or an object), and
// a list's items are always an array, so a list of one reads like a list of many.
const parser = new XMLParser({
  ignoreAttributes: true,
  parseTagValue: false,
  trimValues: true,
  jPath: true,
  isArray: (name, jPath) => name === itemOf(String(jPath).split('.').at(-2) ?? ''),
});

/** Lists become arrays of their items; everything else stays as parsed. */
function plain(value: unknown, name = ''): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map((v) => plain(v));
  const entries = Object.entries(value);
  if (entries.length === 1 && entries[0]?.[0] === itemOf(name)) return plain(entries[0][1]);
  return Object.fromEntries(entries.map(([k, v]) => [k, plain(v, k)]));
}

/** `<Result>` of a query answer as plain data. */
export function resultOf(xml: string, action: string): Record<string, unknown> {
  const result = (parser.parse(xml) as Record<string, Record<string, unknown> | undefined>)[
    `${action}Response`
  ]?.[`${action}Result`];
  if (result === undefined) throw new Error(`no ${action}Result in ${xml.slice(0, 300)}`);
  const data = plain(result);
  return typeof data === 'object' && data !== null ? (data as Record<string, unknown>) : {};
}

/** A list of the data, or none: an empty list arrives as an empty element (''), a missing one not at all. */
export const listOf = <T>(v: unknown): T[] => (Array.isArray(v) ? (v as T[]) : []);
