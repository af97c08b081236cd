/**
 * @module convert/copy-blob
 * Makes one blob of a source repository available in a target repository: nothing when it is
 * there, a cross-repository mount on the same registry, else a streamed push (retryable: the
 * source stream is opened again per attempt).
 */
import { PassThrough } from 'node:stream';
import type { Descriptor } from '../oci/index.js';
import type { ImageReference, RegistryClient } from '../remote/index.js';

type Repo = Pick<ImageReference, 'registry' | 'repository'>;

export async function copyBlobBetween(sc: RegistryClient, tc: RegistryClient, from: Repo, to: Repo, d: Descriptor): Promise<void> {
  if ((await tc.headBlob(to.registry, to.repository, d.digest)) !== undefined) return;
  if (from.registry === to.registry && (await tc.mountBlob(to.registry, to.repository, d.digest, from.repository))) return;
  await tc.pushBlob(to.registry, to.repository, d.digest, d.size, () => {
    // A factory so the push can be retried; getBlob is async, so bridge through a PassThrough.
    const pt = new PassThrough();
    sc.getBlob(from.registry, from.repository, d.digest).then(
      (s) => {
        s.on('error', (e) => pt.destroy(e));
        s.pipe(pt);
      },
      (e: unknown) => pt.destroy(e as Error),
    );
    return pt;
  });
}
