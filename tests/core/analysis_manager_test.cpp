#include <gtest/gtest.h>

#include "passes/analysis_manager.h"

namespace lathe {
namespace {

TEST(AnalysisManager, ComputesOnceAndReuses) {
  AnalysisManager analyses;
  int runs = 0;
  auto compute = [&] { return ++runs; };
  EXPECT_EQ(analyses.get<int>("head-importance(gradient)", compute), 1);
  EXPECT_EQ(analyses.get<int>("head-importance(gradient)", compute), 1);
  EXPECT_EQ(analyses.get<int>("head-importance(entropy)", compute), 2);
  EXPECT_EQ(analyses.computations(), 2);
  EXPECT_EQ(analyses.hits(), 1);
}

TEST(AnalysisManager, TransformsDropWhatTheyDoNotPreserve) {
  AnalysisManager analyses;
  auto one = [] { return 1; };
  analyses.get<int>("head-importance(gradient)", one);
  analyses.get<int>("retrieval-heads(0.1)", one);
  analyses.get<int>("outlier-stats", one);

  analyses.invalidate(PreservedAnalyses::all());
  EXPECT_TRUE(analyses.cached("outlier-stats"));

  analyses.invalidate(PreservedAnalyses::none().preserve("retrieval-heads"));
  EXPECT_FALSE(analyses.cached("head-importance(gradient)"));
  EXPECT_TRUE(analyses.cached("retrieval-heads(0.1)"));
  EXPECT_FALSE(analyses.cached("outlier-stats"));

  analyses.invalidate(PreservedAnalyses::none());
  EXPECT_FALSE(analyses.cached("retrieval-heads(0.1)"));
}

}  // namespace
}  // namespace lathe
