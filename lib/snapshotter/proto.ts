// containerd's snapshots service (containerd.services.snapshots.v1.Snapshots)
// as grpc-js sees it: the definition loaded from proto/ (containerd's wire
// format, written for this project), the message shapes the loader options
// below give, and a client for the tests, the benchmark and the REPL.
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { join } from 'node:path';

/** proto/ at the package's top (this file sits two levels down in lib/ and in dist/). */
const PROTO_DIR = join(__dirname, '..', '..', 'proto');

/** snake_case field names as on the wire, int64 as number, enums as their names, unset fields as defaults. */
const LOADER_OPTIONS = { keepCase: true, longs: Number, enums: String, defaults: true, includeDirs: [PROTO_DIR] };

/** The service's definition (methods, their serializers). */
export function snapshotsService(): grpc.ServiceDefinition {
  const def = loadSync('containerd/services/snapshots/v1/snapshots.proto', LOADER_OPTIONS);
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    containerd: { services: { snapshots: { v1: { Snapshots: grpc.ServiceClientConstructor } } } };
  };
  return pkg.containerd.services.snapshots.v1.Snapshots.service;
}

/** containerd.types.Mount on the wire. */
export interface WireMount {
  type: string;
  source: string;
  target?: string;
  options: string[];
}

/** google.protobuf.Timestamp. */
export interface WireTimestamp {
  seconds: number;
  nanos: number;
}

/** containerd.services.snapshots.v1.Info. */
export interface WireInfo {
  name: string;
  parent: string;
  kind: 'UNKNOWN' | 'VIEW' | 'ACTIVE' | 'COMMITTED';
  created_at: WireTimestamp | null;
  updated_at: WireTimestamp | null;
  labels: Record<string, string>;
}

/** A client of the snapshots service at `address` ('unix:/run/x.sock' or a socket path). */
export function snapshotsClient(address: string): grpc.Client & Record<string, (...args: unknown[]) => unknown> {
  const Client = grpc.makeGenericClientConstructor(snapshotsService(), 'Snapshots');
  const target = address.startsWith('unix:') ? address : `unix:${address}`;
  return new Client(target, grpc.credentials.createInsecure()) as grpc.Client & Record<string, (...args: unknown[]) => unknown>;
}

type Callback<T> = (err: grpc.ServiceError | null, res: T) => void;
type Methods = Record<string, ((req: object, md: grpc.Metadata, cb: Callback<unknown>) => void) | undefined>;

/** Call unary method `method` of `client` with `request`. */
export function call<T>(client: grpc.Client, method: string, request: object, metadata?: grpc.Metadata): Promise<T> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Methods)[method];
    if (!fn) throw new Error(`no method ${method}`);
    fn.call(client, request, metadata ?? new grpc.Metadata(), (err, res) => (err ? reject(err) : resolve(res as T)));
  });
}

/** The messages of a List call, in order (each a batch of infos). */
export function listMessages(client: grpc.Client, request: { filters?: string[] } = {}): Promise<Array<{ info: WireInfo[] }>> {
  return new Promise((resolve, reject) => {
    const list = (client as unknown as { List: (req: object) => NodeJS.EventEmitter }).List;
    const messages: Array<{ info: WireInfo[] }> = [];
    const stream = list.call(client, request);
    stream.on('data', (m: { info: WireInfo[] }) => messages.push(m));
    stream.on('end', () => resolve(messages));
    stream.on('error', reject);
  });
}
