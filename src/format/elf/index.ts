/**
 * @module format/elf
 * Just enough of ELF (System V ABI, 64-bit little-endian: x86-64 and AArch64 Linux) to know what
 * the dynamic loader reads when a program starts: program headers (PT_LOAD segments, PT_INTERP,
 * PT_DYNAMIC) and the dynamic section's DT_NEEDED / DT_RUNPATH / DT_RPATH strings. Pure functions
 * over buffers; the caller reads the file ranges they name. Anything else (32-bit, big-endian, not
 * ELF) parses as `null` — callers treat it as "no hint", never as an error.
 */

export const PT_LOAD = 1;
export const PT_DYNAMIC = 2;
export const PT_INTERP = 3;
export const PF_X = 1;
export const PF_W = 2;
const DT_NULL = 0;
const DT_NEEDED = 1;
const DT_STRTAB = 5;
const DT_STRSZ = 10;
const DT_RPATH = 15;
const DT_RUNPATH = 29;
const EM_X86_64 = 62;
const EM_AARCH64 = 183;

export interface ElfSegment {
  type: number;
  flags: number;
  offset: number;
  vaddr: number;
  filesz: number;
  memsz: number;
}

export interface ElfHeaders {
  /** e_machine: 62 x86-64, 183 AArch64, … */
  machine: number;
  segments: ElfSegment[];
}

/** Bytes from the start of the file needed to parse the headers (the ELF header alone is 64). */
export const ELF_HEADER_SIZE = 64;

/**
 * The ELF header and program headers. `head` is the start of the file; null when it is not a
 * 64-bit little-endian ELF file, or when `head` is too short for its program headers (then
 * `elfHeadersLength(head)` says how much is needed).
 */
export function parseElfHeaders(head: Buffer): ElfHeaders | null {
  const need = elfHeadersLength(head);
  if (need === null || head.length < need) return null;
  const machine = head.readUInt16LE(18);
  const phoff = Number(head.readBigUInt64LE(32));
  const phentsize = head.readUInt16LE(54);
  const phnum = head.readUInt16LE(56);
  const segments: ElfSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    segments.push({
      type: head.readUInt32LE(p),
      flags: head.readUInt32LE(p + 4),
      offset: Number(head.readBigUInt64LE(p + 8)),
      vaddr: Number(head.readBigUInt64LE(p + 16)),
      filesz: Number(head.readBigUInt64LE(p + 32)),
      memsz: Number(head.readBigUInt64LE(p + 40)),
    });
  }
  return { machine, segments };
}

/** Length of ELF header + program header table, or null when `head` (≥ 64 bytes) is not ELF64 LE. */
export function elfHeadersLength(head: Buffer): number | null {
  if (head.length < ELF_HEADER_SIZE) return null;
  if (head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2 || head[5] !== 1) return null;
  const phoff = Number(head.readBigUInt64LE(32));
  const phentsize = head.readUInt16LE(54);
  const phnum = head.readUInt16LE(56);
  if (phentsize < 56 || phnum > 512 || phoff > 1 << 20) return null;
  return phoff + phentsize * phnum;
}

/** File offset of a virtual address, through the PT_LOAD segment that maps it. */
export function vaddrToOffset(h: ElfHeaders, vaddr: number): number | undefined {
  for (const s of h.segments) {
    if (s.type === PT_LOAD && vaddr >= s.vaddr && vaddr < s.vaddr + s.filesz) return s.offset + (vaddr - s.vaddr);
  }
  return undefined;
}

export interface DynamicInfo {
  /** string-table offsets of DT_NEEDED, DT_RUNPATH and DT_RPATH entries */
  needed: number[];
  runpath: number[];
  rpath: number[];
  /** file offset and size of the dynamic string table */
  strtab?: { offset: number; size: number };
}

/** Decodes the PT_DYNAMIC segment's entries (16 bytes each, up to DT_NULL). */
export function parseDynamic(h: ElfHeaders, dyn: Buffer): DynamicInfo {
  const out: DynamicInfo = { needed: [], runpath: [], rpath: [] };
  let strVaddr: number | undefined;
  let strSize: number | undefined;
  for (let p = 0; p + 16 <= dyn.length; p += 16) {
    const tag = Number(dyn.readBigInt64LE(p));
    const val = Number(dyn.readBigUInt64LE(p + 8));
    if (tag === DT_NULL) break;
    if (tag === DT_NEEDED) out.needed.push(val);
    else if (tag === DT_RUNPATH) out.runpath.push(val);
    else if (tag === DT_RPATH) out.rpath.push(val);
    else if (tag === DT_STRTAB) strVaddr = val;
    else if (tag === DT_STRSZ) strSize = val;
  }
  if (strVaddr !== undefined && strSize !== undefined && strSize > 0 && strSize < 64 << 20) {
    const offset = vaddrToOffset(h, strVaddr);
    if (offset !== undefined) out.strtab = { offset, size: strSize };
  }
  return out;
}

/** The NUL-terminated string at `off` of a string table ('' when out of range). */
export function cString(table: Buffer, off: number): string {
  if (off < 0 || off >= table.length) return '';
  const end = table.indexOf(0, off);
  return table.toString('utf8', off, end < 0 ? table.length : end);
}

/** The PT_INTERP segment's file range, if any. */
export function interpSegment(h: ElfHeaders): ElfSegment | undefined {
  return h.segments.find((s) => s.type === PT_INTERP && s.filesz > 0 && s.filesz < 4096);
}

/** Multiarch library directory names of the machine (Debian layout). */
export function multiarchTriple(machine: number): string | undefined {
  if (machine === EM_X86_64) return 'x86_64-linux-gnu';
  if (machine === EM_AARCH64) return 'aarch64-linux-gnu';
  return undefined;
}

/**
 * File ranges the dynamic loader certainly reads when it maps this file: the first PT_LOAD
 * segment when it is not executable (ELF and program headers, .interp, notes, the symbol, string,
 * version and relocation tables of a "separate-code" layout), else just the headers; and every
 * writable PT_LOAD segment (RELRO, .got, .data: relocations and initialisation touch them).
 */
export function loaderRanges(h: ElfHeaders, headersLength: number): Array<{ offset: number; length: number }> {
  const out: Array<{ offset: number; length: number }> = [];
  const loads = h.segments.filter((s) => s.type === PT_LOAD && s.filesz > 0).sort((a, b) => a.offset - b.offset);
  const first = loads[0];
  if (first && first.offset === 0 && (first.flags & PF_X) === 0) out.push({ offset: 0, length: first.filesz });
  else out.push({ offset: 0, length: headersLength });
  for (const s of loads) if (s.flags & PF_W) out.push({ offset: s.offset, length: s.filesz });
  return out;
}
