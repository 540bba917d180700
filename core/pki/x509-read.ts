/**
 * Pulls the fields the CA needs out of an X.509 certificate's DER: the
 * subject Name to copy as the issuer of what it signs, its key identifier,
 * its validity and its URI SANs. Node's X509Certificate does the full
 * parsing and verification; this exists because Node gives neither the raw
 * subject Name nor the extensions as bytes.
 */

import { ErrorCodes, MeshError } from '../errors.js';
import { Tag } from './der.js';
import {
  childrenOf,
  contentOf,
  decodeBoolean,
  decodeOid,
  decodeTime,
  decodeWholeBitString,
  encodingOf,
  expectNode,
  readNode,
  readRoot,
  type DerNode,
} from './der-read.js';

export const ExtensionOids = {
  SUBJECT_KEY_ID: '2.5.29.14',
  KEY_USAGE: '2.5.29.15',
  SUBJECT_ALT_NAME: '2.5.29.17',
  BASIC_CONSTRAINTS: '2.5.29.19',
  AUTHORITY_KEY_ID: '2.5.29.35',
  EXT_KEY_USAGE: '2.5.29.37',
} as const;

export interface CertificateExtension {
  readonly critical: boolean;
  /** The extnValue OCTET STRING's content: the extension's own DER. */
  readonly value: Buffer;
}

export interface CertificateFields {
  /** The whole TBSCertificate encoding (what the signature covers). */
  readonly tbs: Buffer;
  /** Serial number content octets (two's complement, as encoded). */
  readonly serial: Buffer;
  /** Issuer Name, full DER. */
  readonly issuer: Buffer;
  /** Subject Name, full DER: copy it verbatim as the issuer of certificates this one signs. */
  readonly subject: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** SubjectPublicKeyInfo, full DER. */
  readonly spki: Buffer;
  /** Extensions by dotted OID. */
  readonly extensions: ReadonlyMap<string, CertificateExtension>;
}

function malformed(what: string): MeshError {
  return new MeshError(ErrorCodes.PKI, `malformed certificate: ${what}`);
}

function readExtensions(buf: Buffer, wrapper: DerNode): Map<string, CertificateExtension> {
  const extensions = new Map<string, CertificateExtension>();
  const [list, ...extra] = childrenOf(buf, wrapper);
  if (!list || extra.length || list.tag !== Tag.SEQUENCE) throw malformed('bad extensions wrapper');
  for (const ext of childrenOf(buf, list)) {
    const parts = childrenOf(buf, ext);
    const [idNode, second, third] = parts;
    if (!idNode || idNode.tag !== Tag.OID || !second) throw malformed('bad extension');
    const critical = third ? decodeBoolean(buf, second) : false;
    const valueNode = third ?? second;
    if (valueNode.tag !== Tag.OCTET_STRING) throw malformed('extension value is not an OCTET STRING');
    const id = decodeOid(contentOf(buf, idNode));
    if (extensions.has(id)) throw malformed(`duplicate extension ${id}`);
    extensions.set(id, { critical, value: contentOf(buf, valueNode) });
  }
  return extensions;
}

/** Splits a DER certificate into the fields above; throws MeshError(PKI) on malformed input. */
export function readCertificate(der: Buffer): CertificateFields {
  const cert = readRoot(der, Tag.SEQUENCE, 'Certificate');
  const tbsNode = expectNode(der, cert.contentStart, cert.end, Tag.SEQUENCE, 'TBSCertificate');
  const fields = childrenOf(der, tbsNode);
  let i = 0;
  // version is [0] EXPLICIT and absent for v1 certificates.
  if (fields[i]?.tag === 0xa0) i++;
  const take = (tag: number, what: string): DerNode => {
    const node = fields[i++];
    if (!node || node.tag !== tag) throw malformed(`missing or bad ${what}`);
    return node;
  };
  const serial = take(Tag.INTEGER, 'serialNumber');
  take(Tag.SEQUENCE, 'signature algorithm');
  const issuer = take(Tag.SEQUENCE, 'issuer');
  const validity = childrenOf(der, take(Tag.SEQUENCE, 'validity'));
  const subject = take(Tag.SEQUENCE, 'subject');
  const spki = take(Tag.SEQUENCE, 'subjectPublicKeyInfo');
  const [notBefore, notAfter] = validity;
  if (!notBefore || !notAfter || validity.length !== 2) throw malformed('bad validity');
  let extensions = new Map<string, CertificateExtension>();
  for (; i < fields.length; i++) {
    const node = fields[i];
    // [1] and [2] are the obsolete unique identifiers; [3] holds the extensions.
    if (node?.tag === 0xa3) extensions = readExtensions(der, node);
  }
  return {
    tbs: encodingOf(der, tbsNode),
    serial: contentOf(der, serial),
    issuer: encodingOf(der, issuer),
    subject: encodingOf(der, subject),
    notBefore: decodeTime(der, notBefore),
    notAfter: decodeTime(der, notAfter),
    spki: encodingOf(der, spki),
    extensions,
  };
}

/** The subjectPublicKey bits of a SubjectPublicKeyInfo (for P-256: the 65-byte uncompressed point). */
export function readSpkiKeyBits(spki: Buffer): Buffer {
  const root = readRoot(spki, Tag.SEQUENCE, 'SubjectPublicKeyInfo');
  const algorithm = expectNode(spki, root.contentStart, root.end, Tag.SEQUENCE, 'SPKI algorithm');
  const bits = readNode(spki, algorithm.end, root.end);
  if (bits.end !== root.end) throw malformed('trailing data in SubjectPublicKeyInfo');
  return decodeWholeBitString(spki, bits);
}

/** The keyIdentifier of a SubjectKeyIdentifier extension value. */
export function readSubjectKeyId(value: Buffer): Buffer {
  return contentOf(value, readRoot(value, Tag.OCTET_STRING, 'SubjectKeyIdentifier'));
}

/** The uniformResourceIdentifier entries of a SubjectAltName extension value. */
export function readSanUris(value: Buffer): string[] {
  const names = readRoot(value, Tag.SEQUENCE, 'SubjectAltName');
  const uris: string[] = [];
  for (const name of childrenOf(value, names)) {
    // [6] IMPLICIT IA5String
    if (name.tag === 0x86) uris.push(contentOf(value, name).toString('latin1'));
  }
  return uris;
}
