#!/usr/bin/env bash
# Compile the dev-chain contracts (DemoStablecoin, Reverter) into committed JSON artifacts, so
# the runtime and the tests never need a compiler: only this script does.
#
# Why --standard-json rather than `solcjs --optimize --bin --abi`: the solcjs CLI has no
# --evm-version flag, and we pin the EVM version so the bytecode runs on every chain we target
# (py-evm in eth-tester, anvil, older L2s): "shanghai" (PUSH0, no cancun opcodes).
#
# Each artifact records the compiler, settings and the SHA-256 of its source; a unit test
# fails when a .sol file changes without re-running this script.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SOLCJS="$ROOT/node_modules/.bin/solcjs"
OUT="$ROOT/src/treasurer/adapters/chains/contracts"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
EVM_VERSION="${EVM_VERSION:-shanghai}"
OPTIMIZER_RUNS=200

if [ ! -x "$SOLCJS" ]; then
  echo "solcjs is missing: run 'npm install' in $ROOT" >&2
  exit 1
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$PY" - "$OUT" "$EVM_VERSION" "$OPTIMIZER_RUNS" >"$WORK/input.json" <<'PYEOF'
import json, pathlib, sys
out, evm_version, runs = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
sources = {p.name: {"content": p.read_text()} for p in sorted(out.glob("*.sol"))}
print(json.dumps({
    "language": "Solidity",
    "sources": sources,
    "settings": {
        "optimizer": {"enabled": True, "runs": runs},
        "evmVersion": evm_version,
        "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
    },
}))
PYEOF

(cd "$WORK" && "$SOLCJS" --standard-json <input.json >output.json)
VERSION="$("$SOLCJS" --version)"

"$PY" - "$OUT" "$WORK/input.json" "$WORK/output.json" "$VERSION" <<'PYEOF'
import hashlib, json, pathlib, sys
out = pathlib.Path(sys.argv[1])
given = json.loads(pathlib.Path(sys.argv[2]).read_text())
raw = pathlib.Path(sys.argv[3]).read_text()
# solcjs prints notes (">>> Cannot retry compilation with SMT ...") before the JSON document.
result = json.loads(raw[raw.index("{"):])
errors = [e for e in result.get("errors", []) if e.get("severity") == "error"]
for e in result.get("errors", []):
    print(e.get("formattedMessage", e.get("message")), file=sys.stderr)
if errors:
    sys.exit(1)
for source, contracts in result["contracts"].items():
    text = given["sources"][source]["content"]
    for name, compiled in contracts.items():
        artifact = {
            "contractName": name,
            "source": source,
            "sourceSha256": hashlib.sha256(text.encode()).hexdigest(),
            "compiler": f"solc {sys.argv[4].strip()}",
            "evmVersion": given["settings"]["evmVersion"],
            "optimizerRuns": given["settings"]["optimizer"]["runs"],
            "abi": compiled["abi"],
            "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
        }
        target = out / f"{name}.json"
        target.write_text(json.dumps(artifact, indent=1, sort_keys=True) + "\n")
        print(f"wrote {target.relative_to(out.parents[4])}")
PYEOF
