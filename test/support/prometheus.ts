/** The value of one sample in a Prometheus text exposition, e.g. `name{label="x"}`; 0 when absent. */
export function sampleValue(body: string, sample: string): number {
  const line = body.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? 0 : Number(line.slice(sample.length + 1));
}
