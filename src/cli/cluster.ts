/**
 * @module cli/cluster
 * The cluster secret of `ferry scheduler` / `ferry peer` from the command line: --cluster-token-file
 * wins over the environment variable FERRY_CLUSTER_TOKEN, which wins over the config file's
 * `cluster` section.
 */

/** The `cluster` config section to use instead of the file's, or undefined to keep the file's. */
export function clusterOverride(
  tokenFile: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): { token?: string; tokenFile?: string } | undefined {
  if (tokenFile) return { tokenFile };
  const t = env.FERRY_CLUSTER_TOKEN?.trim();
  if (t) return { token: t };
  return undefined;
}

export const CLUSTER_TOKEN_FILE_HELP =
  'file holding the cluster secret shared by the scheduler and every peer (else env FERRY_CLUSTER_TOKEN, else config cluster.tokenFile / cluster.token); required on a non-loopback address';
