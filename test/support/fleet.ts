import { type EC2Client, RunInstancesCommand } from '@aws-sdk/client-ec2';

/** Launches `count` instances with these tags in one RunInstances (moto starts them running at once). */
export async function launchInstances(
  ec2: EC2Client,
  count: number,
  tags: Record<string, string>,
): Promise<string[]> {
  const res = await ec2.send(
    new RunInstancesCommand({
      ImageId: 'ami-12c6146b',
      InstanceType: 't3.small',
      MinCount: count,
      MaxCount: count,
      TagSpecifications: [
        { ResourceType: 'instance', Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) },
      ],
    }),
  );
  return (res.Instances ?? []).map((i) => i.InstanceId ?? '');
}
