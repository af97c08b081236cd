/**
 * @module config/cluster
 * The `cluster` section shared by the scheduler and peer configs: the secret every member of one
 * P2P cluster holds (requests between members are HMAC-signed with it; see
 * src/p2p/common/cluster-auth.ts). At most one of `token` / `tokenFile`; the environment variable
 * FERRY_CLUSTER_TOKEN and the CLI flag --cluster-token-file are applied by the commands.
 */
import { z } from 'zod';

export const clusterConfigSchema = z
  .object({
    /** The secret itself (prefer tokenFile: config files are often world-readable). */
    token: z.string().min(1).optional(),
    /** A file holding the secret (surrounding whitespace ignored), mode 0600. */
    tokenFile: z.string().min(1).optional(),
  })
  .strict()
  .prefault({})
  .refine((c) => c.token === undefined || c.tokenFile === undefined, { message: 'cluster.token and cluster.tokenFile are exclusive' });

export type ClusterConfig = z.infer<typeof clusterConfigSchema>;
