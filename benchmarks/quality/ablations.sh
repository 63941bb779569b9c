#!/usr/bin/env bash
# Ablations of the quality study (issue 15). Each variant changes one thing; it reuses the main
# study's finished stages (hard-linked; the LLM score cache copied) so only what the change touches
# is redone. Then every variant is evaluated beside BM25, dense and llmr-1 on the same test queries
# (their outcomes come from the main study's cache), into <study>/ablations/study.md.
#   llmr study benchmarks/quality/study.yaml -o runs/quality      # first, the main study
#   bash benchmarks/quality/ablations.sh runs/quality [variant ...]
# BASE holds settings for the main study and every variant, e.g. a study that stops after the pipeline:
#   BASE="--set eval.methods=[llmr-1]"
#   llmr study benchmarks/quality/study.yaml -o runs/quality --until pipeline $BASE
#   BASE="$BASE" bash benchmarks/quality/ablations.sh runs/quality reward allmodes samelabel scale400 iter2
# (The ninth look's rows were made with this script as of commit a412330, from the study as it was then.
# The variants query, all8 (retriever.train_side: query) and prior, bm25prior (distill.prior) are retired
# with their settings (issue 31); their rows in RESULTS.md were made with this script as of commit 7c93a9d.)
set -euo pipefail
STUDY=${1:-runs/quality}
shift || true
CONFIG=benchmarks/quality/study.yaml
G=pipeline.retriever.groups
declare -A CHANGE=(
  [reward]="--set pipeline.distill.teacher=reward+penalties"                        # LLM-R's teacher: the reward model's order too
  [allmodes]="--set pipeline.distill.modes=[cls,mc,gen]"                            # multiple-choice queries distilled too
  [samelabel]="--set $G.drop_same_label_negatives=false"                            # keep same-label negatives
  [scale16]="--set pipeline.candidates.max_per_task=16"                            # distil on the LLM-scored queries only
  [scale400]="--set pipeline.candidates.max_per_task=400"
  [iter2]="--set pipeline.iterations=2"                                             # the paper's second iteration (union, from base)
  [epochs3]="--set pipeline.retriever.epochs=3 --set pipeline.retriever.learning_rate=1e-4"
)
[ $# -gt 0 ] || set -- reward allmodes samelabel scale400
methods="bm25,dense,llmr-1"
for name in "$@"; do
  out=$STUDY-$name
  if [ ! -d "$out/pipeline" ]; then
    mkdir -p "$out"
    cp -al "$STUDY/pipeline" "$out/pipeline"
    cp "$STUDY/scores.sqlite" "$out/scores.sqlite"  # SQLite writes in place: a copy, not a link
  fi
  # shellcheck disable=SC2086
  llmr study $CONFIG -o "$out" --until pipeline ${BASE:-} ${CHANGE[$name]}
  methods+=",$name:$out/pipeline/retriever"
done
# shellcheck disable=SC2086
llmr study $CONFIG -o "$STUDY" ${BASE:-} --set eval.name=ablations --set "eval.methods=[$methods]"
