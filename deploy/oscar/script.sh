#!/usr/bin/env bash
# OSCAR service script: one prediction of a deepaas model per uploaded file.
#
# OSCAR runs it in the model's container with INPUT_FILE_PATH (the uploaded
# file) and TMP_OUTPUT_DIR (whatever is written there is uploaded as the
# result). For an input named NAME.EXT it leaves in TMP_OUTPUT_DIR:
#   NAME.json   the prediction (NAME.csv, NAME.png... for a model answering
#               another media type through its `accept` argument)
#   NAME.log    what the script and deepaas-cli logged, on success or failure
# and exits non-zero, without NAME.json, when the prediction fails.
#
# The input is either a JSON object of predict arguments, or any other file,
# which becomes the model's file argument when it has exactly one
# (docs/oscar.md). Needs bash, python3 and deepaas-cli (DEEPaaS >= 2.5.0).
set -euo pipefail

if [[ -z "${INPUT_FILE_PATH:-}" || -z "${TMP_OUTPUT_DIR:-}" ]]; then
    echo "error: INPUT_FILE_PATH and TMP_OUTPUT_DIR must be set (OSCAR sets them)" >&2
    exit 2
fi

read -r -d '' PROGRAM <<'PYTHON' || true
import base64
import binascii
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

REQUIRED = (2, 5, 0)
FILES_KEY = "oscar-files"
# deepaas-cli's own option: the script chooses where the answer goes.
RESERVED = {"deepaas_method_output"}
ARGUMENT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
NEW_OUTPUT = "New output is "

# Runs in deepaas-cli's interpreter: lists the file arguments of the model
# that deepaas-cli would call, with deepaas's own rules for both.
FIND_FILE_ARGUMENTS = """
import json, os, sys
from deepaas.model import ModelWrapper, available_models, load_model, select_models
names = [n.strip() for n in os.environ.get("DEEPAAS_V2_MODEL", "").split(",")]
specs = select_models([n for n in names if n], available_models())
if len(specs) != 1:
    sys.exit("several models are named in DEEPAAS_V2_MODEL; name one")
wrapper = ModelWrapper(specs[0].name, load_model(specs[0]))
with open(sys.argv[1], "w") as out:
    json.dump([specs[0].name, wrapper.describe().predict.file_arguments], out)
"""


class Failure(Exception):
    """Why the input could not be predicted; the log's last line."""


def log(message):
    print(f"[oscar] {message}", flush=True)


def check_version():
    """DEEPaaS >= 2.5.0, read as the research platform reads it."""
    if shutil.which("deepaas-cli") is None:
        raise Failure("deepaas-cli is not on PATH: is DEEPaaS installed in the image?")
    run = subprocess.run(
        ["deepaas-cli", "--version"], capture_output=True, text=True,
        stdin=subprocess.DEVNULL,
    )
    lines = (run.stdout or run.stderr).strip().splitlines()
    last = lines[-1].strip() if lines else ""
    release = last.split("-")[0]
    try:
        version = tuple(int(part) for part in release.split("."))
    except ValueError:
        raise Failure(
            f"'deepaas-cli --version' printed {last!r}, not a version such as "
            "2.5.0 or 3.0.0-dev0; is DEEPaaS installed in the image?"
        ) from None
    if version < REQUIRED:
        raise Failure(
            f"DEEPaaS {release} is too old: this script needs >= "
            f"{'.'.join(map(str, REQUIRED))} (pip install -U deepaas)"
        )
    log(f"DEEPaaS {last}, Python {sys.version.split()[0]}")


def cli_python():
    """The interpreter of deepaas-cli, which can import deepaas and the model."""
    path = shutil.which("deepaas-cli")
    try:
        with open(path, "rb") as script:
            first = script.readline().decode("utf-8", "replace").strip()
    except (OSError, TypeError):
        first = ""
    if first.startswith("#!") and "python" in first and " " not in first[2:]:
        return first[2:]
    return sys.executable


def file_argument(input_path, work):
    """The name of the model's only file argument, for a non-JSON input."""
    found = os.path.join(work, "file-arguments.json")
    run = subprocess.run(
        [cli_python(), "-c", FIND_FILE_ARGUMENTS, found],
        stdin=subprocess.DEVNULL, stdout=sys.stdout, stderr=sys.stdout,
    )
    if run.returncode != 0:
        raise Failure(
            "the input is not a JSON object of arguments, and the model's file "
            "arguments could not be read (see above)"
        )
    with open(found) as handle:
        model, names = json.load(handle)
    if len(names) != 1:
        which = ", ".join(names) if names else "none"
        raise Failure(
            f"the input {os.path.basename(input_path)!r} is not a JSON object of "
            f"arguments, so it is taken as the model's file argument, but model "
            f"{model!r} has {len(names)} file arguments ({which}); send a JSON "
            f"object with '{FILES_KEY}' instead (docs/oscar.md)"
        )
    log(f"the input is not JSON: passing it as --{names[0]} of model {model!r}")
    return names[0]


def read_arguments(input_path):
    """The input as a JSON object of arguments, or None for another file."""
    with open(input_path, "rb") as handle:
        raw = handle.read()
    try:
        arguments = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        if input_path.endswith(".json"):
            raise Failure(f"the input is not valid JSON: {exc}") from None
        return None
    if isinstance(arguments, dict):
        return arguments
    if input_path.endswith(".json"):
        raise Failure(
            "the input must be a JSON object of predict arguments, "
            f"e.g. {{\"sample\": [5.1, 3.5, 1.4, 0.2]}}; got a {type(arguments).__name__}"
        )
    return None


def option_value(value):
    """A JSON value as deepaas-cli reads it on its command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def decode_files(files, work):
    """Write each base64 file of 'oscar-files'; answer its options."""
    if not isinstance(files, list):
        raise Failure(f"'{FILES_KEY}' must be a list of {{key, file_format, data}}")
    options = []
    for number, item in enumerate(files):
        where = f"'{FILES_KEY}'[{number}]"
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or (
            not isinstance(item.get("data"), str)
        ):
            raise Failure(f"{where} must be an object with a 'key' and base64 'data'")
        if not ARGUMENT_NAME.match(item["key"]):
            raise Failure(f"{where}: {item['key']!r} is not an argument name")
        extension = str(item.get("file_format") or "").lstrip(".")
        if extension and not re.match(r"^[A-Za-z0-9_+-]+$", extension):
            raise Failure(f"{where}: file_format {extension!r} is not an extension")
        try:
            data = base64.b64decode(item["data"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Failure(f"{where}: 'data' is not base64: {exc}") from None
        path = os.path.join(work, f"file-{number}" + (f".{extension}" if extension else ""))
        with open(path, "wb") as handle:
            handle.write(data)
        log(f"{where}: {len(data)} bytes for --{item['key']}")
        options.append(f"--{item['key']}={path}")
    return options


def command_options(arguments, work):
    options = []
    for key, value in arguments.items():
        if key == FILES_KEY:
            options += decode_files(value, work)
            continue
        if not ARGUMENT_NAME.match(key) or key in RESERVED:
            raise Failure(f"{key!r} is not an argument this script can pass")
        if value is None:
            continue  # null: the model's default
        # --key=value: a value that starts with '-' stays a value.
        options.append(f"--{key}={option_value(value)}")
    return options


def written_output(log_path, prefix):
    """Where deepaas-cli wrote the answer: its 'New output is' line, else PREFIX."""
    path = None
    with open(log_path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if NEW_OUTPUT in line:
                path = line.split(NEW_OUTPUT, 1)[1].strip()
    if path is None and os.path.isfile(prefix):
        path = prefix
    if path is None or not os.path.isfile(path):
        raise Failure("deepaas-cli succeeded but wrote no output file")
    return path


def main(input_path, work, log_path):
    check_version()
    arguments = read_arguments(input_path)
    if arguments is None:
        options = [f"--{file_argument(input_path, work)}={input_path}"]
    else:
        options = command_options(arguments, work)
    prefix = os.path.join(work, "output")
    command = ["deepaas-cli", "--deepaas_method_output", prefix, "predict", *options]
    log("running: " + " ".join(command))
    run = subprocess.run(
        command, stdin=subprocess.DEVNULL, stdout=sys.stdout, stderr=sys.stdout,
    )
    sys.stdout.flush()
    if run.returncode != 0:
        raise Failure(f"deepaas-cli failed with exit status {run.returncode} (see above)")
    return written_output(log_path, prefix)


if __name__ == "__main__":
    input_path, work, log_path, result_link = sys.argv[1:5]
    try:
        produced = main(input_path, work, log_path)
    except Failure as failure:
        log(f"error: {failure}")
        sys.exit(1)
    with open(result_link, "w") as handle:
        handle.write(produced)
    log(f"done: {os.path.basename(produced)}")
PYTHON

input_name=$(basename -- "$INPUT_FILE_PATH")
# The name up to its first dot, as the research platform's script names outputs.
name=${input_name%%.*}
name=${name:-$input_name}
mkdir -p -- "$TMP_OUTPUT_DIR"
work=$(mktemp -d "${TMPDIR:-/tmp}/oscar-deepaas.XXXXXX")
log="$work/service.log"
cleanup() { rm -rf -- "$work"; }
trap cleanup EXIT

status=0
if [[ ! -f "$INPUT_FILE_PATH" ]]; then
    echo "[oscar] error: the input $INPUT_FILE_PATH is not a file" >"$log"
    status=1
else
    python3 -c "$PROGRAM" "$INPUT_FILE_PATH" "$work" "$log" "$work/result-path" \
        >"$log" 2>&1 </dev/null || status=$?
fi

if [[ $status -eq 0 ]]; then
    produced=$(cat "$work/result-path")
    extension=${produced##*/}
    extension=${extension##*.}
    [[ "$extension" == "${produced##*/}" ]] && extension=json
    # Copied beside, then renamed: the output appears whole or not at all.
    part="$TMP_OUTPUT_DIR/.$name.$extension.part"
    if ! { cp -- "$produced" "$part" && mv -f -- "$part" "$TMP_OUTPUT_DIR/$name.$extension"; }; then
        rm -f -- "$part"
        echo "[oscar] error: could not write $TMP_OUTPUT_DIR/$name.$extension" >>"$log"
        status=1
    fi
fi
cp -- "$log" "$TMP_OUTPUT_DIR/$name.log"
cat -- "$log" >&2
if [[ $status -eq 0 && "$input_name" == event-file ]]; then
    # A synchronous invocation answers what the script prints.
    cat -- "$TMP_OUTPUT_DIR/$name.$extension"
fi
exit "$status"
