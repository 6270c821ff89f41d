// One Router/Generate per iteration at a constant arrival rate, for benchmarks/hit_path.py: k6 as a
// compiled client of the same targets the Python client times. The stream's time is the iteration's
// (k6 ends an iteration once its stream has ended), which k6 records with microseconds.
import grpc from 'k6/net/grpc';

const client = new grpc.Client();
client.load([__ENV.PROTO_DIR], 'subsecond/v1/router.proto');
const CA = open(__ENV.CA);

export const options = {
  scenarios: {
    hits: {
      executor: 'constant-arrival-rate', rate: Number(__ENV.RATE), timeUnit: '1s',
      duration: `${__ENV.DURATION}s`, preAllocatedVUs: 20, maxVUs: 200,
    },
  },
  summaryTrendStats: ['med', 'p(95)', 'p(99)', 'count'],
};

let connected = false;

export default function () {
  if (!connected) {
    client.connect(__ENV.TARGET, { tls: { cacerts: [CA] }, timeout: '10s' });
    connected = true;
  }
  const stream = new grpc.Stream(client, 'subsecond.v1.Router/Generate', { timeout: '10s' });
  stream.on('error', (error) => console.error(`${error.code}: ${error.message}`));
  stream.write({ prompt: __ENV.PROMPT, maxTokens: 96 });
  stream.end();
}
