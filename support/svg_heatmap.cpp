#include "support/svg_heatmap.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <utility>

namespace lathe {

std::string xml_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

// White to a dark blue.
std::string color(double share) {
  share = std::clamp(share, 0.0, 1.0);
  const auto channel = [&](int from, int to) { return static_cast<int>(std::lround(from + (to - from) * share)); };
  char buffer[8];
  std::snprintf(buffer, sizeof buffer, "#%02x%02x%02x", channel(255, 8), channel(255, 48), channel(255, 107));
  return buffer;
}

}  // namespace

Heatmap head_heatmap(std::string title, const std::vector<std::vector<double>>& scores) {
  Heatmap heatmap;
  heatmap.title = std::move(title);
  heatmap.row_axis = "layer";
  heatmap.column_axis = "head";
  std::size_t widest = 0;
  for (std::size_t layer = 0; layer < scores.size(); ++layer) {
    heatmap.row_labels.push_back(std::to_string(layer));
    widest = std::max(widest, scores[layer].size());
  }
  heatmap.values = scores;
  for (std::size_t head = 0; head < widest; ++head) heatmap.column_labels.push_back(std::to_string(head));
  return heatmap;
}

std::string heatmap_svg(const Heatmap& heatmap) {
  constexpr int kCell = 44, kLeft = 70, kTop = 50;
  const int rows = static_cast<int>(heatmap.values.size());
  int columns = 0;
  for (const auto& row : heatmap.values) columns = std::max(columns, static_cast<int>(row.size()));
  const int width = kLeft + columns * kCell + 20, height = kTop + rows * kCell + 40;
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"sans-serif\" font-size=\"11\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << kLeft << "\" y=\"20\" font-size=\"14\">" << xml_escape(heatmap.title) << "</text>\n"
      << "<text x=\"" << kLeft << "\" y=\"" << kTop - 18 << "\">" << xml_escape(heatmap.column_axis) << "</text>\n"
      << "<text x=\"8\" y=\"" << kTop + 14 << "\">" << xml_escape(heatmap.row_axis) << "</text>\n";
  for (int c = 0; c < columns; ++c) {
    const auto label = c < static_cast<int>(heatmap.column_labels.size()) ? heatmap.column_labels[c] : std::to_string(c);
    svg << "<text x=\"" << kLeft + c * kCell + kCell / 2 << "\" y=\"" << kTop - 4 << "\" text-anchor=\"middle\">"
        << xml_escape(label) << "</text>\n";
  }
  const double span = heatmap.high > heatmap.low ? heatmap.high - heatmap.low : 1.0;
  for (int r = 0; r < rows; ++r) {
    const auto label = r < static_cast<int>(heatmap.row_labels.size()) ? heatmap.row_labels[r] : std::to_string(r);
    const int y = kTop + r * kCell;
    svg << "<text x=\"" << kLeft - 6 << "\" y=\"" << y + kCell / 2 + 4 << "\" text-anchor=\"end\">" << xml_escape(label)
        << "</text>\n";
    for (int c = 0; c < static_cast<int>(heatmap.values[r].size()); ++c) {
      const double value = heatmap.values[r][c];
      const int x = kLeft + c * kCell;
      if (std::isnan(value)) {
        svg << "<rect x=\"" << x << "\" y=\"" << y << "\" width=\"" << kCell << "\" height=\"" << kCell
            << "\" fill=\"#eeeeee\" stroke=\"white\"/>\n";
        continue;
      }
      const double share = (value - heatmap.low) / span;
      char text[32];
      std::snprintf(text, sizeof text, "%.2f", value);
      svg << "<rect x=\"" << x << "\" y=\"" << y << "\" width=\"" << kCell << "\" height=\"" << kCell << "\" fill=\""
          << color(share) << "\" stroke=\"white\"><title>" << xml_escape(label) << ", "
          << xml_escape(c < static_cast<int>(heatmap.column_labels.size()) ? heatmap.column_labels[c] : std::to_string(c))
          << ": " << text << "</title></rect>\n"
          << "<text x=\"" << x + kCell / 2 << "\" y=\"" << y + kCell / 2 + 4 << "\" text-anchor=\"middle\" fill=\""
          << (share > 0.55 ? "white" : "black") << "\">" << text << "</text>\n";
    }
  }
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace lathe
