// Reads {"<name>": <middleware spec>, ...} as JSON on stdin and validates each against Traefik's own
// MiddlewareSpec schema (@kubernetes-models/traefik, generated from Traefik's Go types). Prints one
// JSON object: {"<name>": [errors...]}; an empty list is a valid middleware.
import { MiddlewareSpec } from "@kubernetes-models/traefik/traefik.io/v1alpha1/MiddlewareSpec";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const result = {};
for (const [name, spec] of Object.entries(JSON.parse(input))) {
  try {
    new MiddlewareSpec(spec).validate();
    result[name] = [];
  } catch (error) {
    result[name] = [String(error && error.message ? error.message : error)];
  }
}
process.stdout.write(JSON.stringify(result));
