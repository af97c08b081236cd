// The low-level zlib port inside pako (CommonJS, untyped upstream): the inflater's stream API
// with Z_BLOCK and `data_type`, which Node's zlib binding does not expose.
declare module 'pako/lib/zlib/zstream.js' {
  class ZStream {
    input: Uint8Array | null;
    next_in: number;
    avail_in: number;
    total_in: number;
    output: Uint8Array | null;
    next_out: number;
    avail_out: number;
    total_out: number;
    msg: string;
    data_type: number;
  }
  export default ZStream;
}

declare module 'pako/lib/zlib/inflate.js' {
  import type ZStream from 'pako/lib/zlib/zstream.js';
  const inflate: {
    inflateInit2(strm: ZStream, windowBits: number): number;
    inflate(strm: ZStream, flush: number): number;
    inflateEnd(strm: ZStream): number;
  };
  export default inflate;
}
