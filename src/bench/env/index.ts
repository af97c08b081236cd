/**
 * @module bench/env
 * The shared test and benchmark environment: private containerd instances, network namespaces
 * with shaping and counters, busybox/Debian root filesystems, OCI test images and pushing them,
 * and a reference registry (Debian docker-registry).
 */
export { startContainerd, containerdConfig, type Containerd, type ContainerdOptions, type CtrOptions } from './containerd.js';
export {
  createNetns,
  deleteNetns,
  listNetns,
  createVeth,
  createBridge,
  deleteLink,
  shape,
  unshape,
  parseRate,
  ifaceCounters,
  inNetns,
  execInNetns,
  createStar,
  type VethEnd,
  type ShapeOptions,
  type IfaceCounters,
  type Star,
  type StarNode,
} from './netns.js';
export { busyboxRootfs, debootstrapRootfs, debianMirror, cacheDir, rootfsKey, withDirLock, type DebootstrapOptions } from './rootfs.js';
export {
  buildOciImage,
  pushImage,
  whiteout,
  opaqueDir,
  type BuildOciImageOptions,
  type BuiltImage,
  type BuiltLayer,
  type ImageConfigInput,
  type PushOptions,
} from './images.js';
export { startDistributionRegistry, type DistributionRegistry, type DistributionRegistryOptions } from './registry.js';
export { exec, execCheck, waitFor, sbinPath, netnsWrap, mountsUnder, unmountUnder, type ExecResult, type ExecOptions } from './exec.js';
