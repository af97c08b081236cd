/**
 * @module daemon/fuse-attr
 * A RAFS inode's stat as FUSE attributes. Imports types only: the FUSE reader threads load it.
 */
import type { RafsStat } from '../format/rafs/index.js';
import type { FuseAttr } from '../fuse/protocol.js';

export function fuseAttrOf(st: RafsStat): FuseAttr {
  return {
    ino: st.ino,
    size: st.size,
    blocks: st.blocks,
    mtime: st.mtime,
    mtimeNsec: st.mtimeNsec,
    mode: st.mode,
    nlink: st.nlink,
    uid: st.uid,
    gid: st.gid,
    rdev: st.rdev,
  };
}
