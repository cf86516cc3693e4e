#!/bin/sh
# Build a container image that serves a model package with deepaas.
#
#   deploy/container/build.sh [-t TAG] [-b BASE_IMAGE] [--online] [MODEL ...]
#
# MODEL is anything "pip wheel" accepts: the model's source folder, a wheel,
# or a requirement such as my-model==1.2.  Without MODEL the image serves
# the demo model built into deepaas.
#
# By default every wheel (deepaas from this source tree, the models and all
# their dependencies) is made here with "pip wheel", and the image build
# needs no network.  With --online only deepaas and the models are made
# here; the build installs their dependencies from the package index.
#
# Environment:
#   PYTHON       the Python whose pip makes the wheels (python3); its
#                version must match the base image's python3 for packages
#                with compiled parts
#   PODMAN       the container tool (podman; docker works too)
#   BUILD_OPTS   more options for "podman build", e.g. "--isolation chroot"
#   KEEP_WHEELS  a folder to keep the wheels in (by default a temporary one)
set -eu

usage() {
    sed -n '3,4p' "$0" | sed 's/^# *//' >&2
    exit 2
}

here=$(cd "$(dirname "$0")" && pwd)
source_tree=$(cd "$here/../.." && pwd)
tag=deepaas-model:latest
base=""
online=0
while [ "$#" -gt 0 ]; do
    case "$1" in
        -t|--tag) [ "$#" -ge 2 ] || usage; tag=$2; shift 2 ;;
        -b|--base) [ "$#" -ge 2 ] || usage; base=$2; shift 2 ;;
        --online) online=1; shift ;;
        -h|--help) usage ;;
        --) shift; break ;;
        -*) echo "build.sh: unknown option $1" >&2; usage ;;
        *) break ;;
    esac
done

python=${PYTHON:-python3}
podman=${PODMAN:-podman}
if [ ! -f "$source_tree/pyproject.toml" ] || [ ! -d "$source_tree/deepaas" ]; then
    echo "build.sh: $source_tree is not a deepaas source tree" >&2
    exit 1
fi

if [ -n "${KEEP_WHEELS:-}" ]; then
    wheels=$KEEP_WHEELS
    mkdir -p "$wheels"
    if [ -n "$(ls -A "$wheels")" ]; then
        echo "build.sh: KEEP_WHEELS folder $wheels is not empty" >&2
        exit 1
    fi
else
    wheels=$(mktemp -d "${TMPDIR:-/tmp}/deepaas-wheels.XXXXXX")
    trap 'rm -rf "$wheels"' EXIT INT TERM
fi

pip() { "$python" -m pip --disable-pip-version-check "$@"; }

# deepaas first and on its own: the models' "deepaas" requirement is then
# met by this wheel, never by the older deepaas on the package index.
pip wheel --no-deps --wheel-dir "$wheels" "$source_tree"
deepaas_wheel=$(ls "$wheels"/deepaas-*.whl)
if [ "$online" = 1 ]; then
    if [ "$#" -gt 0 ]; then
        pip wheel --no-deps --wheel-dir "$wheels" "$@"
    fi
else
    pip wheel --wheel-dir "$wheels" --find-links "$wheels" "$deepaas_wheel" "$@"
fi

set -- --file "$here/Dockerfile" --tag "$tag" --build-arg "OFFLINE=$([ "$online" = 1 ] && echo 0 || echo 1)"
if [ -n "$base" ]; then
    set -- "$@" --build-arg "BASE_IMAGE=$base"
fi
# shellcheck disable=SC2086  # BUILD_OPTS is a list of options
"$podman" build ${BUILD_OPTS:-} "$@" "$wheels"
echo "build.sh: built $tag"
