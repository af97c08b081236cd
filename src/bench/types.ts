/**
 * @module bench/types
 * The shapes of `results.json`: what was run, on what, each raw measurement, and the summaries.
 */
import type { Summary } from './stats.js';

export type ModeId =
  | 'oci'
  | 'lazy-erofs'
  | 'lazy-fuse'
  | 'lazy-prefetch'
  | 'lazy-trace'
  | 'lazy-p2p'
  | 'oci-p2p'
  | 'estargz'
  | 'estargz-opt'
  | 'oci-ref';

export const ALL_MODES: ModeId[] = [
  'oci',
  'lazy-erofs',
  'lazy-fuse',
  'lazy-prefetch',
  'lazy-trace',
  'lazy-p2p',
  'oci-p2p',
  'estargz',
  'estargz-opt',
  'oci-ref',
];

export const MODE_LABELS: Record<ModeId, string> = {
  oci: 'OCI (containerd pull + overlayfs)',
  'lazy-erofs': 'Ferry lazy (EROFS)',
  'lazy-fuse': 'Ferry lazy (FUSE)',
  'lazy-prefetch': 'Ferry lazy + prefetch',
  'lazy-trace': 'Ferry lazy + prefetch trace',
  'lazy-p2p': 'Ferry lazy + P2P',
  'oci-p2p': 'OCI through Ferry P2P mirror',
  estargz: 'eStargz (stargz-snapshotter)',
  'estargz-opt': 'eStargz optimized (stargz-snapshotter)',
  'oci-ref': 'Ferry OCI-ref (original gzip image, zran index)',
};

/** The peers a user would pick instead of Ferry (not Ferry code). */
export const PEER_MODES: ModeId[] = ['estargz', 'estargz-opt'];

/** The registry serving a run: Ferry's own, or CNCF distribution (Debian's docker-registry, what Harbor runs on). */
export type RegistryKind = 'ferry' | 'distribution';

export const ALL_REGISTRIES: RegistryKind[] = ['ferry', 'distribution'];

export const REGISTRY_LABELS: Record<RegistryKind, string> = {
  ferry: 'ferry registry',
  distribution: 'CNCF distribution (docker-registry)',
};

/** The images one registry holds for a workload (a variant is absent when it was not prepared). */
export interface ImageRefs {
  oci: string;
  nydus?: string;
  nydusPrefetch?: string;
  /** The Nydus image in a repository of its own, with a prefetch trace attached by a warm-up run (lazy-trace). */
  nydusTrace?: string;
  /** `ctr-remote images convert --estargz --oci`. */
  estargz?: string;
  /** `ctr-remote images optimize --oci`: files the workload read first, prefetch landmark. */
  estargzOpt?: string;
  /** The OCI image itself, once `ferry convert --oci-ref` attached its zran index as a referrer. */
  ociRef?: string;
}

/** Modes that involve several nodes sharing data (run for every N); others run at N = 1 only unless asked. */
export const P2P_MODES: ModeId[] = ['lazy-p2p', 'oci-p2p'];

export type ReadySignal =
  | { kind: 'exit'; stdout: string }
  | { kind: 'line'; pattern: string }
  | { kind: 'http'; port: number; path?: string };

export interface ModeStatus {
  id: ModeId;
  label: string;
  status: 'run' | 'not-run';
  reason?: string;
}

export interface WorkloadInfo {
  id: string;
  title: string;
  command: string[];
  ready: ReadySignal;
  /** Compressed size of the OCI image's layers (bytes). */
  imageBytes: number;
  /** Uncompressed size of the OCI image's layers (bytes). */
  uncompressedBytes: number;
  /** Size of the Nydus image's blobs + bootstrap, when converted. */
  nydusBytes?: number;
  /** Size of the eStargz image's layers, when converted. */
  estargzBytes?: number;
  /** Bytes the workload reads and times itself (the sequential-read workload), if any. */
  reportsReadBytes?: number;
  /** The images of this workload in each registry of the run. */
  refs: Partial<Record<RegistryKind, ImageRefs>>;
}

/** One node's measurements in one run. */
export interface NodeResult {
  node: number;
  ok: boolean;
  error?: string;
  pullMs: number;
  createMs: number;
  /** task start → ready signal. */
  runMs: number;
  /** pull start → ready (the primary metric). */
  readyMs: number;
  /** Bytes received on the node's interface during the run. */
  rxBytes: number;
  /** user+sys CPU of this node's Ferry processes (ms). */
  ferryCpuMs: number;
  /** user+sys CPU of this node's containerd (ms). */
  containerdCpuMs: number;
  output?: string;
  /** Lazy modes: bytes the node's daemon fetched (snapshotter metric ferry_snapshotter_lazy_bytes_fetched). */
  lazyBytesFetched?: number;
  /** P2P modes: bytes this node's peer fetched from the registry vs from other peers. */
  p2p?: { backToSource: number; remotePeer: number };
  /** The time the workload reported for its own work (the sequential read), ms. */
  appMs?: number;
}

export interface RunResult {
  workload: string;
  mode: ModeId;
  registry: RegistryKind;
  /** The registry link's rate during this run (tc tbf), e.g. 100mbit. */
  bandwidth: string;
  nodes: number;
  rep: number;
  startedAt: string;
  ok: boolean;
  error?: string;
  /** Bytes the registry reports it served as blob bodies (its own counter), when it has one. */
  registryBlobBytes: number | null;
  /** HTTP requests the registry reports it answered during the run (its own counter), when it has one. */
  registryRequests: number | null;
  /** Bytes sent by the registry's network interface. */
  registryIfaceBytes: number;
  /** Slowest node's pull start → ready. */
  allReadyMs: number;
  /** user+sys CPU of shared Ferry services of this run (P2P scheduler, seed peer), ms. */
  serviceCpuMs: number;
  perNode: NodeResult[];
}

export interface GroupSummary {
  workload: string;
  mode: ModeId;
  registry: RegistryKind;
  bandwidth: string;
  nodes: number;
  runs: number;
  failures: number;
  readyMs: Summary;
  allReadyMs: Summary;
  pullMs: Summary;
  createMs: Summary;
  runMs: Summary;
  registryBytes: Summary;
  /** Registry requests per run (all nodes). */
  registryRequests: Summary;
  registryIfaceBytes: Summary;
  nodeRxBytes: Summary;
  ferryCpuMs: Summary;
  /** Lazy modes: bytes each node's daemon fetched. */
  lazyBytesFetched: Summary;
  /** Time the workload reported for its own work (sequential read), per node. */
  appMs: Summary;
  /** registry bytes (median) ÷ OCI image bytes. */
  registryBytesPerImage: number;
  /** OCI baseline median ready ÷ this median ready (same registry, link, workload and N). */
  speedup: number | null;
}

export interface MachineInfo {
  hostname: string;
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  os: string;
  node: string;
  /** 1-minute load average when the results were written. */
  loadAvg1m?: number;
}

export interface BenchResults {
  schema: 'ferry-bench/v2';
  startedAt: string;
  finishedAt: string;
  gitCommit: string;
  machine: MachineInfo;
  settings: {
    /** Registry link profiles (tc tbf rates); N > 1 runs at the first one only. */
    bandwidths: string[];
    repeat: number;
    nodes: number[];
    quick: boolean;
    /** Registries that served runs, side by side. */
    registries: RegistryKind[];
    seed: number;
    /** Client that pulled the Ferry lazy modes (absent in reports written before it was a choice: `ferry`). */
    pullClient?: 'ferry' | 'ctr-remote';
  };
  modes: ModeStatus[];
  workloads: WorkloadInfo[];
  runs: RunResult[];
  summary: GroupSummary[];
  notes: string[];
}
