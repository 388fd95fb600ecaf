/// \file
/// JSON text read strictly, for the files attn reads (model configs, the safetensors header): nlohmann
/// keeps the last of two equal keys in one object without a word, so a config `{"embed_dim": 6,
/// "embed_dim": 8}` would silently mean 8. `parse_json_strict` parses as `J::parse` does, but calls
/// `on_duplicate(key)` for a key seen twice in one object and `on_too_deep()` past `max_depth` levels of
/// nesting; both must throw (the caller's typed error, naming its file). nlohmann's own parse errors
/// (nlohmann::json::parse_error) pass through for the caller to wrap.
#pragma once

#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace attn::detail {

template <class J, class OnDuplicate, class OnTooDeep>
J parse_json_strict(std::string_view text, int max_depth, OnDuplicate&& on_duplicate, OnTooDeep&& on_too_deep) {
  std::vector<std::set<std::string, std::less<>>> keys;  // the keys seen in each open object
  auto cb = [&](int depth, typename J::parse_event_t event, J& parsed) -> bool {
    using E = typename J::parse_event_t;
    if (depth > max_depth) on_too_deep();
    if (event == E::object_start) {
      keys.emplace_back();
    } else if (event == E::object_end) {
      if (!keys.empty()) keys.pop_back();
    } else if (event == E::key && !keys.empty()) {
      const auto& k = parsed.template get_ref<const std::string&>();
      if (!keys.back().insert(k).second) on_duplicate(k);
    }
    return true;
  };
  return J::parse(text.begin(), text.end(), cb);
}

}  // namespace attn::detail
