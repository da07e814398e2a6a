// geoedit keygen NAME | --private FILE --public FILE: a new Ed25519 key pair for signed reviews.
import { writeKeyPair } from '../governance/review';
import { EXIT, UsageError, helpText, parse, type OptSpec } from './common';
import { govError } from './gov-common';

export const KEYGEN_FLAGS: OptSpec[] = [
  { name: 'private', type: 'string', kind: 'string', default: 'NAME.key.pem', metavar: 'FILE', desc: 'where the private key goes (PKCS#8 PEM, mode 0600)' },
  { name: 'public', type: 'string', kind: 'string', default: 'NAME.pub.pem', metavar: 'FILE', desc: 'where the public key goes (SPKI PEM: put it in the trusted-keys folder)' },
  { name: 'help', type: 'boolean', kind: 'boolean', default: '', desc: 'this help', short: 'h' },
];

export async function runKeygen(argv: string[]): Promise<number> {
  try {
    const { values, positionals } = parse(argv, KEYGEN_FLAGS, true);
    if (values.help) {
      process.stdout.write(helpText('geoedit keygen NAME  |  geoedit keygen --private FILE --public FILE', "Makes an Ed25519 key pair as 'openssl genpkey -algorithm ed25519' does: NAME.key.pem (private, PKCS#8) and\nNAME.pub.pem (public, SPKI). Sign reviews with the private key (geoedit review --key); put the public key into the\nfolder given to geoedit verify --trusted-keys. Existing files are never overwritten.", KEYGEN_FLAGS));
      return EXIT.OK;
    }
    if (positionals.length > 1) throw new UsageError(`expected one NAME, got ${positionals.join(' ')}`);
    const name = positionals[0];
    const priv = (values.private as string | undefined) ?? (name ? `${name}.key.pem` : undefined);
    const pub = (values.public as string | undefined) ?? (name ? `${name}.pub.pem` : undefined);
    if (!priv || !pub) throw new UsageError('give NAME, or both --private FILE and --public FILE');
    const r = writeKeyPair(priv, pub);
    process.stdout.write(`private key: ${r.privateFile} (keep it secret)\npublic key:  ${r.publicFile} (fingerprint ${r.fingerprint})\n`);
    return EXIT.OK;
  } catch (e) {
    return govError(e, 'keygen');
  }
}
