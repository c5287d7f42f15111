#!/usr/bin/env bash
# Train the four generative recipes side by side on one GPU for a fixed time, then score them
# with benchmarks/generative_quality.py (the digits resnet18 as the feature network, trained here too).
#
#     bash benchmarks/generative_gpu.sh OUT_DIR [MINUTES]        # MINUTES of training per recipe (default 5)
#
# Each recipe stops at the end of the first epoch after MINUTES (--max-minutes) and finishes as after
# its last epoch; its summary.json gives the epochs reached, so `--epochs N` without --max-minutes
# repeats the run. Small models on a big GPU are bound by kernel launches, so the four processes
# share it with little loss. Environment: PYTHON (default python), DEVICE (default cuda),
# JUDGE_EPOCHS (default: the vision recipe's), N (generated images per run, default 1000).
set -u
out=${1:?usage: generative_gpu.sh OUT_DIR [MINUTES]}
minutes=${2:-5}
py=${PYTHON:-python}
device=${DEVICE:-cuda}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"

train() {  # train NAME [recipe options]: one recipe in the background, its log in OUT/NAME.log
    local name=$1
    shift
    (
        start=$(date +%s)
        $py -m zoo.generative.train --model "$name" --device "$device" --no-progress --output-dir "$out/$name" \
            --max-minutes "$minutes" "$@" >"$out/$name.log" 2>&1
        echo "$name: exit $? after $(($(date +%s) - start)) s" >>"$out/status.txt"
    ) &
}

judge_epochs=()
[ -n "${JUDGE_EPOCHS:-}" ] && judge_epochs=(--epochs "$JUDGE_EPOCHS")
(
    $py -m zoo.vision.train --model resnet18 --device "$device" --no-progress --output-dir "$out/judge_run" \
        --save-model "$out/judge" "${judge_epochs[@]}" >"$out/judge.log" 2>&1
    echo "judge: exit $?" >>"$out/status.txt"
) &
# Ho et al. train with batch 128; each epoch is --repeats passes over the 1,347 training digits
train ddpm --epochs 100000 --batch-size 128 --repeats 20
train dcgan --epochs 100000 --repeats 10
train wgan_gp --epochs 100000 --repeats 10
train vae --epochs 100000 --repeats 10
wait
cat "$out/status.txt"

runs=()
[ -f "$out/ddpm/model/model.safetensors" ] && runs+=(--run "ddpm=$out/ddpm/model:ddpm" --run "ddim50=$out/ddpm/model:ddim50")
for name in dcgan wgan_gp vae; do
    [ -f "$out/$name/model/model.safetensors" ] && runs+=(--run "$name=$out/$name/model")
done
$py "$here/generative_quality.py" --classifier "$out/judge" --device "$device" --chunk 1000 --n "${N:-1000}" \
    "${runs[@]}" --grid-dir "$out/grids" --json "$out/quality.json" --save-samples "$out/samples.pt"
