#!/usr/bin/env bash
# Issue 32, the deciding study: does the LLM's feedback teach the retriever anything at 270M?
#   bash benchmarks/quality/feedback.sh recipe    # the pre-registered recipe (RESULTS.md), 50 scored queries per task
#   bash benchmarks/quality/feedback.sh control   # after the recipe's score stage: same queries, LLM order vs labels
#   SCORED=100 bash benchmarks/quality/feedback.sh control   # the same at 100 scored queries per task
#   SCORED=100 bash benchmarks/quality/feedback.sh mixed     # the labels-only recipe plus the LLM's order where it scored
#   bash benchmarks/quality/feedback.sh fresh-gen             # after mixed: its retriever on unseen generation queries
# recipe: study.yaml with the margin signal, 50 queries per task scored by the LLM (16 candidates each), the
#   reward model spreading it over every mined query of every mode (reward+penalties), evaluated on the
#   2,066 confirmation queries, paired with the labels-only recipe's recorded outcomes.
# control: only the LLM-scored queries (~1,250 lists of 16), two retrievers trained alike, one distilled on
#   the LLM's own margin scores (teacher llm: its order within a task, and within a label for
#   classification) and one on the labels alone (teacher penalties: the same -100s, a flat order
#   otherwise). Their difference is what the LLM's feedback teaches, with the reward model out of the way.
# mixed: study.yaml's labels-only recipe (cls and gen, 8 candidates, 17,698 lists) with teacher llm+penalties: on
#   the queries the LLM scored (any mode, their 16 candidates) the LLM's order replaces the flat labels-only
#   order, so mixed - labels-only recipe is what the LLM's feedback adds to the default; 2,066 test queries.
set -euo pipefail
RUN=${RUN:-runs/feedback}
SCORED=${SCORED:-50}
RECIPE=(--set pipeline.scoring.signal=margin --set pipeline.scoring.max_per_task=$SCORED
  --set pipeline.scoring.n_candidates=16 --set pipeline.distill.teacher=reward+penalties
  --set "pipeline.distill.modes=[cls,mc,gen]")
what=${1:-recipe}
shift || true
case $what in
recipe)
  llmr study benchmarks/quality/study.yaml -o "$RUN" -y "${RECIPE[@]}" --set eval.name=confirm \
    --set eval.max_per_task=100 --set eval.max_per_gen_task=40 --set "eval.methods=[llmr-1]" "$@"
  ;;
control)
  scores=$(grep -l "\"max_per_task\": $SCORED," "$RUN"/pipeline/iteration-1/score-*/stage.json | sed 's|stage.json|scores.jsonl.gz|')
  data=$(ls -d "$RUN"/pipeline/data-*)
  ctl=$RUN-control$([ "$SCORED" = 50 ] || echo "-$SCORED")
  for teacher in llm penalties; do
    out=$ctl/$teacher
    llmr train teacher -c "$scores" --data "$data" --teacher "$teacher" --top-n 16 -o "$out/teacher.jsonl.gz"
    llmr train retriever -s "$out/teacher.jsonl.gz" --data "$data" -o "$out/retriever" \
      --epochs 3 --batch-size 16 --learning-rate 5e-5 --max-length 96
  done
  # The 1,040 test queries of study.yaml (neither arm was chosen on them); --set eval.max_per_task=100
  # --set eval.max_per_gen_task=40 extends them to the 2,066 (cached outcomes are reused).
  llmr study benchmarks/quality/study.yaml -o "$ctl" "${RECIPE[@]}" --set eval.name=control "$@" \
    --set "eval.methods=[llm$SCORED:$ctl/llm/retriever,pen$SCORED:$ctl/penalties/retriever]" \
    --set "eval.compare=[llm$SCORED - pen$SCORED]"
  # BM25 and dense on the same queries are recorded: benchmarks/quality/outcomes.py compare with
  # outcomes-2026-12-06-ablations.json.gz (1,040) or -confirm.json.gz (2,066).
  ;;
mixed)
  MIXED=(benchmarks/quality/study.yaml -o "$RUN" -y --set pipeline.scoring.signal=margin
    --set pipeline.scoring.max_per_task=$SCORED --set pipeline.scoring.n_candidates=16
    --set pipeline.distill.teacher=llm+penalties --set eval.name=mixed --set "eval.methods=[llmr-1]")
  # the 1,040 queries first, then all 2,066 (the 1,040's outcomes are cached)
  llmr study "${MIXED[@]}" "$@"
  llmr study "${MIXED[@]}" --set eval.max_per_task=100 --set eval.max_per_gen_task=40 "$@"
  # paired with the labels-only recipe: outcomes.py compare <eval outcomes>:llmr-1 outcomes-2026-12-06-confirm.json.gz:pen1000clsgen
  mkdir -p "$RUN-retrievers" && rm -rf "$RUN-retrievers/mixed"
  cp -r "$(ls -td "$RUN"/pipeline/iteration-1/retriever-* | head -1)" "$RUN-retrievers/mixed"
  ;;
fresh-gen)
  # The pre-registered test (RESULTS.md): mixed against the labels-only recipe (retrained here) on all 1,400
  # generation test queries; compare with the 2,066's outcomes as the third file to keep the 1,120 fresh ones.
  llmr study benchmarks/quality/study.yaml -o "$RUN" -y --set eval.name=fresh-gen \
    --set eval.tasks=natural_questions,squad_v1,common_gen,e2e_nlg,dart,aeslc,gigaword --set eval.max_per_gen_task=200 \
    --set "eval.methods=[llmr-1,mixed:$RUN-retrievers/mixed,bm25,dense]" "$@"
  ;;
esac
