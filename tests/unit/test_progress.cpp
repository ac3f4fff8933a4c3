#include <gtest/gtest.h>

#include "pipeline/core/progress.h"

TEST(Progress, FormatDuration) {
  using pipeline::Progress;
  EXPECT_EQ(Progress::format_duration(5.4), "5s");
  EXPECT_EQ(Progress::format_duration(125), "2m05s");
  EXPECT_EQ(Progress::format_duration(3 * 3600 + 7 * 60 + 9), "3h07m");
  EXPECT_EQ(Progress::format_duration(-1), "--");
}
