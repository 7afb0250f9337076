import type { Document } from 'bson';

/** A message that is well framed but cannot be understood: answered with an error, stream kept. */
export class ProtocolError extends Error {
  constructor(
    message: string,
    /** MongoDB error code the client will see. */
    readonly code: number,
    readonly codeName: string,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** MongoDB error codes the proxy emits itself (names as in the server's error_codes.yml). */
export const ErrorCode = {
  InternalError: { code: 1, codeName: 'InternalError' },
  BadValue: { code: 2, codeName: 'BadValue' },
  NoSuchKey: { code: 4, codeName: 'NoSuchKey' },
  HostUnreachable: { code: 6, codeName: 'HostUnreachable' },
  FailedToParse: { code: 9, codeName: 'FailedToParse' },
  AuthenticationFailed: { code: 18, codeName: 'AuthenticationFailed' },
  InvalidBSON: { code: 22, codeName: 'InvalidBSON' },
  Unauthorized: { code: 13, codeName: 'Unauthorized' },
  TypeMismatch: { code: 14, codeName: 'TypeMismatch' },
  ProtocolError: { code: 17, codeName: 'ProtocolError' },
  CursorNotFound: { code: 43, codeName: 'CursorNotFound' },
  MaxTimeMSExpired: { code: 50, codeName: 'MaxTimeMSExpired' },
  CommandNotFound: { code: 59, codeName: 'CommandNotFound' },
  NetworkTimeout: { code: 89, codeName: 'NetworkTimeout' },
  ShutdownInProgress: { code: 91, codeName: 'ShutdownInProgress' },
  NetworkInterfaceExceededTimeLimit: { code: 202, codeName: 'NetworkInterfaceExceededTimeLimit' },
  OperationFailed: { code: 96, codeName: 'OperationFailed' },
  CommandNotSupported: { code: 115, codeName: 'CommandNotSupported' },
  ExceededMemoryLimit: { code: 146, codeName: 'ExceededMemoryLimit' },
  MaxStalenessOutOfRange: { code: 160, codeName: 'MaxStalenessOutOfRange' },
  NoSuchTransaction: { code: 251, codeName: 'NoSuchTransaction' },
  UnsupportedOpQueryCommand: { code: 352, codeName: 'UnsupportedOpQueryCommand' },
  ReauthenticationRequired: { code: 391, codeName: 'ReauthenticationRequired' },
  IngressRequestRateLimitExceeded: { code: 462, codeName: 'IngressRequestRateLimitExceeded' },
  NotWritablePrimary: { code: 10107, codeName: 'NotWritablePrimary' },
  BSONObjectTooLarge: { code: 10334, codeName: 'BSONObjectTooLarge' },
} as const;
export type KnownError = (typeof ErrorCode)[keyof typeof ErrorCode];

/** A Mongo error document, as a server would send it. */
export function errorDocument(kind: KnownError, errmsg: string, errorLabels: readonly string[] = []): Document {
  const doc: Document = { ok: 0, errmsg, code: kind.code, codeName: kind.codeName };
  if (errorLabels.length > 0) doc.errorLabels = [...errorLabels];
  return doc;
}

export function protocolError(message: string, kind: KnownError): ProtocolError {
  return new ProtocolError(message, kind.code, kind.codeName);
}
