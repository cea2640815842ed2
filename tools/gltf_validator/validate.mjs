// Validate one glTF/GLB file with the pinned Khronos glTF validator and print its JSON report on stdout.
// Usage: node validate.mjs FILE   (exit 0 with a report, whatever issues it lists; exit 2 when the file
// cannot be read or the validator cannot parse it at all, with one line on stderr).
import { readFile } from "node:fs/promises";
import path from "node:path";
import validator from "gltf-validator";

const file = process.argv[2];
if (!file) {
  console.error("usage: node validate.mjs FILE.glb|FILE.gltf");
  process.exit(2);
}
try {
  const bytes = new Uint8Array(await readFile(file));
  const report = await validator.validateBytes(bytes, {
    uri: path.basename(file),
    maxIssues: 0, // list every issue
    writeTimestamp: false,
    externalResourceFunction: async (uri) =>
      new Uint8Array(await readFile(path.resolve(path.dirname(file), decodeURIComponent(uri)))),
  });
  process.stdout.write(JSON.stringify(report) + "\n");
} catch (error) {
  console.error(`${file}: ${error}`);
  process.exit(2);
}
