"""Names and help of the engine's command-line flags, shared by app.py, the CLI and the evaluation (no torch
import here: a command's --help and its argument errors stay instant)."""

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
PRECISION_CHOICES = ("auto", *PRECISIONS)
PRECISION_HELP = ("network precision (auto: fp16 on CUDA; on the CPU int8 through OpenVINO where it has VNNI, else "
                  "bf16 where it has AMX, else fp32; fp32 is exact); env MATTING_PRECISION")
