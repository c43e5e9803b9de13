#pragma once

#include "passes/pass.h"

namespace lathe {

// `finetune`: trains the model on the calibration data by distilling from the model as loaded
// (KL of next-token distributions), with AdamW; what trains is the gates, the attention
// blocks, or everything. Reports the loss and the attention-output outlier metrics per step.
PassInfo finetune_pass_info();

}  // namespace lathe
