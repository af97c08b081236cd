/**
 * @module p2p/peer/ca
 * The interception CA of the HTTPS proxy: loaded from files or generated (key written 0600; a key
 * file group or others can read or write is refused: whoever holds it can impersonate every
 * intercepted registry to this node's clients), and
 * leaf certificates minted per intercepted host (DNS or IP subjectAltName), signed with node-forge
 * (node:crypto cannot issue X.509 certificates). Keys are generated with node:crypto (fast, native);
 * one leaf key is shared by all leaf certificates of a process.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import forge from 'node-forge';
import { FerryError } from '../../core/index.js';

export interface CaFiles {
  certPem: string;
  keyPem: string;
  certPath: string;
  keyPath: string;
  generated: boolean;
}

function rsaPair(): { pub: string; priv: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    pub: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    priv: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

function serial(): string {
  const b = randomBytes(12);
  b[0] = b[0]! & 0x7f; // positive
  return b.toString('hex');
}

/** A new self-signed CA certificate and key (PEM). */
export function createCa(commonName = 'Ferry P2P proxy CA'): { certPem: string; keyPem: string } {
  const { pub, priv } = rsaPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(pub);
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(Date.now() - 86_400_000);
  cert.validity.notAfter = new Date(Date.now() + 10 * 365 * 86_400_000);
  const attrs = [
    { name: 'commonName', value: commonName },
    { name: 'organizationName', value: 'Ferry' },
  ];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(priv), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: priv };
}

/** Refuses a CA key file that group or others may read or write. */
function checkKeyMode(keyPath: string): void {
  const mode = statSync(keyPath).mode & 0o777;
  if (mode & 0o077) {
    throw new FerryError(
      'FAILED_PRECONDITION',
      `CA key ${keyPath} is accessible to group/others (mode 0${mode.toString(8)}); ` +
        `anyone who can read it can impersonate every intercepted registry: chmod 600 ${keyPath}`,
    );
  }
}

/** Loads the CA from the given files, or from/into `<dataDir>/ca/` (generated on first use). */
export function loadOrCreateCa(opts: { certPath?: string | undefined; keyPath?: string | undefined; dataDir: string }): CaFiles {
  if (opts.certPath || opts.keyPath) {
    if (!opts.certPath || !opts.keyPath) throw new FerryError('INVALID_ARGUMENT', '--ca-cert and --ca-key must be given together');
    let files: CaFiles;
    try {
      files = {
        certPem: readFileSync(opts.certPath, 'utf8'),
        keyPem: readFileSync(opts.keyPath, 'utf8'),
        certPath: opts.certPath,
        keyPath: opts.keyPath,
        generated: false,
      };
    } catch (err) {
      throw new FerryError('INVALID_ARGUMENT', `cannot read CA: ${(err as Error).message}`, { cause: err });
    }
    checkKeyMode(opts.keyPath);
    return files;
  }
  const certPath = join(opts.dataDir, 'ca', 'ca.crt');
  const keyPath = join(opts.dataDir, 'ca', 'ca.key');
  if (existsSync(certPath) && existsSync(keyPath)) {
    checkKeyMode(keyPath);
    return { certPem: readFileSync(certPath, 'utf8'), keyPem: readFileSync(keyPath, 'utf8'), certPath, keyPath, generated: false };
  }
  const ca = createCa();
  mkdirSync(dirname(certPath), { recursive: true, mode: 0o700 });
  writeFileSync(keyPath, ca.keyPem, { mode: 0o600 });
  chmodSync(keyPath, 0o600);
  writeFileSync(certPath, ca.certPem, { mode: 0o644 });
  return { ...ca, certPath, keyPath, generated: true };
}

/** Mints (and caches) leaf certificates signed by a CA. */
export class LeafMinter {
  private readonly caCert: forge.pki.Certificate;
  private readonly caKey: forge.pki.rsa.PrivateKey;
  private readonly leaf = rsaPair();
  private readonly cache = new Map<string, { certPem: string; ctx: SecureContext }>();

  constructor(caCertPem: string, caKeyPem: string) {
    try {
      this.caCert = forge.pki.certificateFromPem(caCertPem);
      this.caKey = forge.pki.privateKeyFromPem(caKeyPem) as forge.pki.rsa.PrivateKey;
    } catch (err) {
      throw new FerryError('INVALID_ARGUMENT', `CA certificate/key unreadable (RSA PEM expected): ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  get keyPem(): string {
    return this.leaf.priv;
  }

  certFor(host: string): string {
    const hit = this.cache.get(host);
    if (hit) return hit.certPem;
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.publicKeyFromPem(this.leaf.pub);
    cert.serialNumber = serial();
    cert.validity.notBefore = new Date(Date.now() - 86_400_000);
    cert.validity.notAfter = new Date(Date.now() + 365 * 86_400_000);
    cert.setSubject([{ name: 'commonName', value: host.slice(0, 64) }]);
    cert.setIssuer(this.caCert.subject.attributes);
    const san = isIP(host) ? { type: 7, ip: host } : { type: 2, value: host };
    cert.setExtensions([
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [san] },
      { name: 'authorityKeyIdentifier', keyIdentifier: this.caCert.generateSubjectKeyIdentifier().getBytes() },
    ]);
    cert.sign(this.caKey, forge.md.sha256.create());
    const certPem = forge.pki.certificateToPem(cert);
    this.cache.set(host, {
      certPem,
      ctx: createSecureContext({ cert: certPem + forge.pki.certificateToPem(this.caCert), key: this.leaf.priv }),
    });
    return certPem;
  }

  contextFor(host: string): SecureContext {
    this.certFor(host);
    return this.cache.get(host)!.ctx;
  }
}
