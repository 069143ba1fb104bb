import { DescribeRegionsCommand, type EC2Client } from '@aws-sdk/client-ec2';

/** A cheap read that proves credentials, endpoint and network all work. */
export function createAwsProbe(ec2: EC2Client): () => Promise<void> {
  return async () => {
    await ec2.send(new DescribeRegionsCommand({ RegionNames: [] }));
  };
}
