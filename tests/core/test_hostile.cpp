// The catalogue of bad inputs: one table, each row a hostile config, shape, mask or file, the typed
// exception it must raise and the words its message must contain (what was wrong: the layer or
// function, the parameter or tensor, and what came). A row that raises nothing, another type, or a
// message without its words fails. Every class of input that reaches a public function is here.
#include "support.hpp"

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <typeinfo>

using namespace attn_test;

namespace {

enum class Kind { config, shape, weights, io };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::config: return "ConfigError";
    case Kind::shape: return "ShapeError";
    case Kind::weights: return "WeightsError";
    case Kind::io: return "IOError";
  }
  return "?";
}

bool is_kind(const attn::Error& e, Kind k) {
  switch (k) {
    case Kind::config: return dynamic_cast<const attn::ConfigError*>(&e) != nullptr;
    case Kind::shape: return dynamic_cast<const attn::ShapeError*>(&e) != nullptr;
    case Kind::weights: return dynamic_cast<const attn::WeightsError*>(&e) != nullptr;
    case Kind::io: return dynamic_cast<const attn::IOError*>(&e) != nullptr;
  }
  return false;
}

struct Case {
  const char* name;
  Kind kind;
  std::vector<std::string> words;  // each must appear in what()
  std::function<void()> run;
};

using Bytes = std::vector<std::uint8_t>;

/// A safetensors file: 8-byte little-endian header length, header, data.
Bytes file_of(const std::string& header, const Bytes& data = {}) {
  Bytes b;
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<std::uint8_t>(header.size() >> (8 * i)));
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}
Bytes f32_bytes(std::initializer_list<float> v) {
  Bytes b;
  for (float f : v)
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::uint8_t>(std::bit_cast<std::uint32_t>(f) >> (8 * i)));
  return b;
}
void read(const Bytes& b) { (void)attn::SafeTensors::from_bytes(b, "bad.safetensors"); }

void make(const std::string& type, const Json& params) { (void)attn::create_attention_layer<float>(type, params); }
void make_cfg(const Json& cfg) { (void)attn::create_attention_from_config<float>(cfg); }

template <class T, int R>
attn::Tensor<T, R> ones(const Shape& s) {
  return random_tensor<T, R>(s, 1);
}

/// A small multi_head layer's weights as a safetensors file, with `edit` applied to the writer first.
Bytes mha_file(const std::function<void(attn::SafeTensorsWriter&)>& edit) {
  attn::SafeTensorsWriter w;
  edit(w);
  return w.bytes();
}
void load_mha(const Bytes& b, attn::LoadOptions opt = {}) {
  attn::MultiHeadAttention<float> layer({.embed_dim = 4, .num_heads = 2});
  attn::load_weights(layer, attn::SafeTensors::from_bytes(b, "w.safetensors"), "", opt);
}
std::vector<float> filled(std::size_t n) { return std::vector<float>(n, 0.5f); }

std::vector<Case> catalogue() {
  using attn::Size2;
  std::vector<Case> c;
  const Json gqa{{"d_model", 8}, {"n_head", 2}, {"n_kv_head", 1}};
  const auto with = [](Json j, const std::string& k, const Json& v) {
    j[k] = v;
    return j;
  };

  // ---- configs -------------------------------------------------------------------------------------
  c.push_back({"unknown type", Kind::config, {"Unknown attention type 'multihead'", "multi_head"},
               [] { make("multihead", {{"embed_dim", 8}}); }});
  c.push_back({"unknown parameter", Kind::config, {"ratioo", "channel"},
               [] { make("channel", {{"channels", 8}, {"ratioo", 2}}); }});
  c.push_back({"missing required", Kind::config, {"group_query", "['n_kv_head']"},
               [] { make("group_query", {{"d_model", 8}, {"n_head", 2}}); }});
  c.push_back({"int given as string", Kind::config, {"d_model", "str"}, [=] { make("group_query", with(gqa, "d_model", "8")); }});
  c.push_back({"bool given as string", Kind::config, {"use_bias"},
               [=] { make("group_query", with(gqa, "use_bias", "yes")); }});
  c.push_back({"negative heads", Kind::config, {"num_heads", "-8"},
               [] { make("multi_head", {{"embed_dim", 8}, {"num_heads", -8}}); }});
  c.push_back({"zero embed_dim", Kind::config, {"embed_dim", "0"}, [] { make("self_attention", {{"embed_dim", 0}}); }});
  c.push_back({"d_model not divisible by n_head", Kind::config, {"d_model (10)", "n_head (4)"},
               [] { make("group_query", {{"d_model", 10}, {"n_head", 4}, {"n_kv_head", 1}}); }});
  c.push_back({"n_head not divisible by n_kv_head", Kind::config, {"n_head (4)", "n_kv_head (3)"},
               [] { make("group_query", {{"d_model", 8}, {"n_head", 4}, {"n_kv_head", 3}}); }});
  c.push_back({"embed_dim not divisible by num_heads", Kind::config, {"embed_dim", "num_heads"},
               [] { make("multi_head", {{"embed_dim", 10}, {"num_heads", 3}}); }});
  c.push_back({"dropout above 1", Kind::config, {"dropout_rate", "1.5"}, [=] { make("group_query", with(gqa, "dropout_rate", 1.5)); }});
  c.push_back({"rope_percentage 0", Kind::config, {"rope_percentage"}, [=] { make("group_query", with(gqa, "rope_percentage", 0)); }});
  c.push_back({"negative rope_theta", Kind::config, {"rope_theta", "-1"}, [=] { make("group_query", with(gqa, "rope_theta", -1.0)); }});
  c.push_back({"max_seq_len 0", Kind::config, {"max_seq_len", "0"}, [=] { make("group_query", with(gqa, "max_seq_len", 0)); }});
  c.push_back({"even kernel_size", Kind::config, {"kernel_size", "odd"}, [] { make("spatial", {{"kernel_size", 4}}); }});
  c.push_back({"zero kernel_size", Kind::config, {"kernel_size", "positive"}, [] { make("spatial", {{"kernel_size", 0}}); }});
  c.push_back({"kernel_size of three numbers", Kind::config, {"kernel_size"},
               [] { make("spatial", {{"kernel_size", {3, 3, 3}}}); }});
  c.push_back({"zero channels", Kind::config, {"channels", "0"}, [] { make("channel", {{"channels", 0}}); }});
  c.push_back({"zero ratio", Kind::config, {"ratio"}, [] { make("cbam", {{"channels", 8}, {"ratio", 0}}); }});
  c.push_back({"unknown initializer", Kind::config, {"kernel_initializer", "bogus"},
               [] { make("channel", {{"channels", 8}, {"kernel_initializer", "bogus"}}); }});
  c.push_back({"negative context_dim", Kind::config, {"context_dim", "-3"},
               [] { make("cross_attention", {{"embed_dim", 8}, {"context_dim", -3}}); }});
  c.push_back({"params not an object", Kind::config, {"group_query"}, [] { make("group_query", Json::array({1, 2})); }});
  c.push_back({"config not an object", Kind::config, {"dictionary", "array"}, [] { make_cfg(Json::array()); }});
  c.push_back({"config without type", Kind::config, {"'type'"}, [] { make_cfg({{"embed_dim", 8}}); }});
  c.push_back({"type not a string", Kind::config, {"'type'", "integer"}, [] { make_cfg({{"type", 3}}); }});
  c.push_back({"name not a string", Kind::config, {"'name'"}, [] { make_cfg({{"type", "channel"}, {"channels", 8}, {"name", 5}}); }});
  c.push_back({"int beyond int range", Kind::config, {"embed_dim"},
               [] { make("multi_head", {{"embed_dim", 4294967304LL}}); }});
  c.push_back({"unsigned 2^64 - 1", Kind::config, {"embed_dim"},
               [] { make("multi_head", {{"embed_dim", std::numeric_limits<std::uint64_t>::max()}}); }});
  c.push_back({"float for an int", Kind::config, {"embed_dim"}, [] { make("multi_head", {{"embed_dim", 8.5}}); }});
  c.push_back({"NaN-like huge float", Kind::config, {"dropout_rate"}, [=] { make("group_query", with(gqa, "dropout_rate", 1e308)); }});
  // allocation (item 5 of the hostile-input issue): valid configs beyond the allocation limit
  c.push_back({"max_seq_len 2^31 - 1", Kind::config, {"group_query", "max_seq_len", "bytes", "allocation limit"},
               [=] { make("group_query", with(gqa, "max_seq_len", 2147483647)); }});
  c.push_back({"kernel_size 99999", Kind::config, {"spatial", "kernel_size", "79998400008 bytes"},
               [] { make("spatial", {{"kernel_size", 99999}}); }});
  c.push_back({"embed_dim 1e9", Kind::config, {"multi_head", "embed_dim", "bytes"},
               [] { make("multi_head", {{"embed_dim", 1000000000}}); }});
  c.push_back({"channels 2^31 - 1", Kind::config, {"channel", "channels", "bytes"},
               [] { make("channel", {{"channels", 2147483647}, {"ratio", 1}}); }});
  c.push_back({"attention core block size 0", Kind::config, {"query_block", "key_block"}, [] {
                 std::vector<float> buf(8);
                 const auto v = attn::ops::heads_of<float>(buf.data(), 1, 2, 1, 4, 4);
                 attn::ops::attention_core(v, v, v, attn::ops::heads_out<float>(buf.data(), 1, 2, 1, 4, 4), 1.0f,
                                           {}, nullptr, {.query_block = 0});
               }});
  c.push_back({"causal_mask beyond the limit", Kind::config, {"causal_mask", "bytes"},
               [] {
                 volatile Index big = Index(1) << 40;  // a run-time value, as a user's would be
                 (void)attn::causal_mask(big, big);
               }});
  c.push_back({"rope tables beyond the limit", Kind::config, {"max_seq_len", "bytes"},
               [] { (void)attn::ops::rope_tables<float>(8, 1.0, 1e4, Index(1) << 40); }});

  // ---- shapes --------------------------------------------------------------------------------------
  const auto mha = [] { return attn::MultiHeadAttention<float>({.embed_dim = 8, .num_heads = 2}); };
  c.push_back({"multi_head input width", Kind::shape, {"multi_head", "input", "[2, 3, 5]"},
               [=] { (void)mha().forward(ones<float, 3>({2, 3, 5})); }});
  c.push_back({"factory: rank 2 input", Kind::shape, {"multi_head", "rank"}, [] {
                 (void)attn::create_attention_layer<float>("multi_head", {{"embed_dim", 8}})
                     .forward(attn::AnyTensor<float>(Shape{3, 8}));
               }});
  c.push_back({"factory: two inputs to a one-input layer", Kind::shape, {"multi_head", "1 input"}, [] {
                 const attn::AnyTensor<float> x(Shape{1, 2, 8});
                 (void)attn::create_attention_layer<float>("multi_head", {{"embed_dim", 8}}).forward({x, x});
               }});
  c.push_back({"factory: one input to cross_attention", Kind::shape, {"cross_attention", "2 input"}, [] {
                 (void)attn::create_attention_layer<float>("cross_attention", {{"embed_dim", 8}})
                     .forward(attn::AnyTensor<float>(Shape{1, 2, 8}));
               }});
  c.push_back({"group_query longer than max_seq_len", Kind::shape, {"group_query", "max_seq_len (4)", "(5)"}, [] {
                 attn::GroupedQueryAttention<float> l({.d_model = 8, .n_head = 2, .n_kv_head = 1, .max_seq_len = 4});
                 (void)l.forward(ones<float, 3>({1, 5, 8}));
               }});
  c.push_back({"group_query width", Kind::shape, {"group_query", "d_model"}, [] {
                 attn::GroupedQueryAttention<float> l({.d_model = 8, .n_head = 2, .n_kv_head = 1});
                 (void)l.forward(ones<float, 3>({1, 3, 6}));
               }});
  c.push_back({"cross_attention context width", Kind::shape, {"cross_attention", "context"}, [] {
                 attn::CrossAttention<float> l({.embed_dim = 8, .context_dim = 6});
                 (void)l.forward(ones<float, 3>({1, 3, 8}), ones<float, 3>({1, 4, 5}));
               }});
  c.push_back({"cross_attention batch", Kind::shape, {"cross_attention", "context"}, [] {
                 attn::CrossAttention<float> l({.embed_dim = 8});
                 (void)l.forward(ones<float, 3>({2, 3, 8}), ones<float, 3>({3, 4, 8}));
               }});
  c.push_back({"channel channels", Kind::shape, {"channel", "input"}, [] {
                 attn::ChannelAttention<float> l({.channels = 8, .ratio = 2});
                 (void)l.forward(ones<float, 4>({1, 3, 3, 4}));
               }});
  c.push_back({"cbam channels", Kind::shape, {"cbam", "input"}, [] {
                 attn::CBAM<float> l({.channels = 8, .ratio = 2});
                 (void)l.forward(ones<float, 4>({1, 3, 3, 4}));
               }});
  c.push_back({"sdpa key width", Kind::shape, {"key", "[1, 4, 3]"},
               [] { (void)attn::scaled_dot_product_attention(ones<double, 3>({1, 2, 2}), ones<double, 3>({1, 4, 3}),
                                                             ones<double, 3>({1, 4, 2})); }});
  c.push_back({"sdpa value length", Kind::shape, {"value", "[1, 5, 2]"},
               [] { (void)attn::scaled_dot_product_attention(ones<double, 3>({1, 2, 2}), ones<double, 3>({1, 4, 2}),
                                                             ones<double, 3>({1, 5, 2})); }});
  c.push_back({"sdpa batch", Kind::shape, {"key", "[2, 4, 2]"},
               [] { (void)attn::scaled_dot_product_attention(ones<double, 3>({1, 2, 2}), ones<double, 3>({2, 4, 2}),
                                                             ones<double, 3>({2, 4, 2})); }});
  c.push_back({"sdpa heads not a multiple", Kind::shape, {"query heads (4)", "key/value heads (3)"},
               [] { (void)attn::scaled_dot_product_attention(ones<double, 4>({1, 4, 2, 2}), ones<double, 4>({1, 3, 4, 2}),
                                                             ones<double, 4>({1, 3, 4, 2})); }});
  c.push_back({"sdpa key_lengths count", Kind::shape, {"key_lengths", "2 entries"}, [] {
                 const std::array<Index, 1> len{3};
                 attn::SdpaOptions<double> o;
                 o.key_lengths = std::span<const Index>(len);
                 (void)attn::scaled_dot_product_attention(ones<double, 3>({2, 2, 2}), ones<double, 3>({2, 4, 2}),
                                                          ones<double, 3>({2, 4, 2}), o);
               }});
  c.push_back({"sdpa bias shape", Kind::shape, {"bias", "[3, 3]", "broadcast"}, [] {
                 const auto bias = ones<double, 2>({3, 3});
                 attn::SdpaOptions<double> o;
                 o.bias = bias;
                 (void)attn::scaled_dot_product_attention(ones<double, 3>({1, 2, 2}), ones<double, 3>({1, 4, 2}),
                                                          ones<double, 3>({1, 4, 2}), o);
               }});
  c.push_back({"core: negative extent", Kind::shape, {"attention", "negative extent"}, [] {
                 std::vector<float> buf(8);
                 auto q = attn::ops::heads_of<float>(buf.data(), 1, 2, 1, 4, 4);
                 q.len = -2;
                 attn::ops::attention_core(q, q, q, attn::ops::heads_out<float>(buf.data(), 1, 2, 1, 4, 4), 1.0f, {});
               }});
  c.push_back({"rope table shorter than the input", Kind::shape, {"rope", "table length"}, [] {
                 const auto t = attn::ops::rope_tables<float>(4, 1.0, 1e4, 2);
                 std::vector<float> x(3 * 4);
                 attn::ops::apply_rope(attn::ops::heads_out<float>(x.data(), 1, 3, 1, 4, 4), t.view());
               }});

  // ---- masks ---------------------------------------------------------------------------------------
  const auto x8 = ones<float, 3>({2, 3, 8});
  c.push_back({"mask rank 1", Kind::shape, {"multi_head", "attn_mask", "rank 1"}, [=] {
                 attn::Tensor<bool, 1> m(3);
                 m.setConstant(true);
                 (void)mha().forward(x8, {.attn_mask = attn::AttnMask(m)});
               }});
  c.push_back({"mask rank 5", Kind::shape, {"multi_head", "attn_mask", "rank 5"}, [=] {
                 attn::Tensor<bool, 5> m(2, 1, 1, 3, 3);
                 m.setConstant(true);
                 (void)mha().forward(x8, {.attn_mask = attn::AttnMask(m)});
               }});
  c.push_back({"padding mask of the wrong length", Kind::shape, {"multi_head", "key_padding_mask", "[2, 4]"}, [=] {
                 attn::Tensor<bool, 2> m(2, 4);
                 m.setConstant(true);
                 (void)mha().forward(x8, {.key_padding = attn::KeyPaddingMask(m)});
               }});
  c.push_back({"rank 3 mask of the wrong queries", Kind::shape, {"attn_mask", "[2, 2, 3]", "neither 1 nor equal"}, [=] {
                 attn::Tensor<bool, 3> m(2, 2, 3);
                 m.setConstant(true);
                 (void)mha().forward(x8, {.attn_mask = attn::AttnMask(m)});
               }});
  c.push_back({"rank 4 mask with 3 heads for 2", Kind::shape, {"attn_mask", "[2, 3, 3, 3]"}, [=] {
                 attn::Tensor<bool, 4> m(2, 3, 3, 3);
                 m.setConstant(true);
                 (void)mha().forward(x8, {.attn_mask = attn::AttnMask(m)});
               }});
  c.push_back({"group_query padding of another batch", Kind::shape, {"group_query", "key_padding_mask", "[3, 3]"}, [=] {
                 attn::GroupedQueryAttention<float> l({.d_model = 8, .n_head = 2, .n_kv_head = 1});
                 attn::Tensor<bool, 2> m(3, 3);
                 m.setConstant(true);
                 (void)l.forward(x8, {.key_padding = attn::KeyPaddingMask(m)});
               }});
  c.push_back({"self_attention padding of another batch", Kind::shape, {"self_attention", "key_padding_mask", "[1, 3]"}, [=] {
                 attn::SelfAttention<float> l({.embed_dim = 8, .num_heads = 2});
                 attn::Tensor<bool, 2> m(1, 3);
                 m.setConstant(true);
                 (void)l.forward(x8, {.key_padding = attn::KeyPaddingMask(m)});
               }});
  c.push_back({"cross_attention padding over queries instead of keys", Kind::shape, {"cross_attention", "key_padding_mask", "[1, 3]"}, [] {
                 attn::CrossAttention<float> l({.embed_dim = 8});
                 attn::Tensor<bool, 2> m(1, 3);
                 m.setConstant(true);
                 (void)l.forward(ones<float, 3>({1, 3, 8}), ones<float, 3>({1, 5, 8}), {.key_padding = attn::KeyPaddingMask(m)});
               }});
  c.push_back({"sdpa mask key axis", Kind::shape, {"attn_mask", "key axis"}, [] {
                 attn::Tensor<bool, 2> m(2, 3);
                 m.setConstant(true);
                 attn::SdpaOptions<double> o;
                 o.attn_mask = attn::AttnMask(m);
                 (void)attn::scaled_dot_product_attention(ones<double, 3>({1, 2, 2}), ones<double, 3>({1, 4, 2}),
                                                          ones<double, 3>({1, 4, 2}), o);
               }});
  c.push_back({"sdpa mask not broadcastable", Kind::shape, {"attn_mask", "[3, 4]", "neither 1 nor equal"}, [] {
                 attn::Tensor<bool, 2> m(3, 4);
                 m.setConstant(true);
                 attn::SdpaOptions<double> o;
                 o.attn_mask = attn::AttnMask(m);
                 (void)attn::scaled_dot_product_attention(ones<double, 3>({1, 2, 2}), ones<double, 3>({1, 4, 2}),
                                                          ones<double, 3>({1, 4, 2}), o);
               }});
  c.push_back({"numeric mask with 0.5", Kind::shape, {"0.5", "flat index 1"}, [] {
                 attn::Tensor<float, 1> m(3);
                 m.setValues({1.0f, 0.5f, 0.0f});
                 (void)attn::mask_from_values(m);
               }});
  c.push_back({"causal_mask negative", Kind::shape, {"causal_mask", "[-1, 3]"}, [] { (void)attn::causal_mask(-1, 3); }});

  // ---- files ---------------------------------------------------------------------------------------
  c.push_back({"83-byte U8 [2^32, 2^31, 0]", Kind::io, {"bad.safetensors", "overflows", "[4294967296,2147483648,0]"}, [] {
                 read(file_of(R"({"t":{"dtype":"U8","shape":[4294967296,2147483648,0],"data_offsets":[0,0]}})"));
               }});
  c.push_back({"zero first, then overflow", Kind::io, {"overflows"}, [] {
                 read(file_of(R"({"t":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})"));
               }});
  c.push_back({"file shorter than its length field", Kind::io, {"bad.safetensors", "8-byte header length"},
               [] { read(Bytes{1, 2, 3}); }});
  c.push_back({"header not JSON", Kind::io, {"not valid JSON"}, [] { read(file_of("{abc")); }});
  c.push_back({"unknown dtype", Kind::io, {"unknown dtype 'F33'"},
               [] { read(file_of(R"({"t":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", f32_bytes({1}))); }});
  c.push_back({"offsets beyond the data", Kind::io, {"data_offsets [0, 8]", "beyond the data section"},
               [] { read(file_of(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f32_bytes({1}))); }});
  c.push_back({"shape and offsets disagree", Kind::io, {"needs 12 bytes"},
               [] { read(file_of(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", f32_bytes({1, 2}))); }});
  c.push_back({"negative extent", Kind::io, {"non-negative integers"},
               [] { read(file_of(R"({"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})")); }});
  c.push_back({"duplicate tensor", Kind::io, {"duplicate name 't'"}, [] {
                 read(file_of(R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"t":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}})"));
               }});
  c.push_back({"a missing weight", Kind::weights, {"multi_head", "proj/kernel", "w.safetensors"}, [] {
                 load_mha(mha_file([](attn::SafeTensorsWriter& w) { w.add<float>("qkv/kernel", {4, 12}, filled(48)); }));
               }});
  c.push_back({"a weight of the wrong shape", Kind::weights, {"multi_head", "qkv/kernel", "[12, 4]", "[4, 12]"}, [] {
                 load_mha(mha_file([](attn::SafeTensorsWriter& w) {
                   w.add<float>("qkv/kernel", {12, 4}, filled(48));
                   w.add<float>("qkv/bias", {12}, filled(12));
                   w.add<float>("proj/kernel", {4, 4}, filled(16));
                   w.add<float>("proj/bias", {4}, filled(4));
                 }));
               }});
  c.push_back({"an extra tensor", Kind::weights, {"multi_head", "extra"}, [] {
                 load_mha(mha_file([](attn::SafeTensorsWriter& w) {
                   w.add<float>("qkv/kernel", {4, 12}, filled(48));
                   w.add<float>("qkv/bias", {12}, filled(12));
                   w.add<float>("proj/kernel", {4, 4}, filled(16));
                   w.add<float>("proj/bias", {4}, filled(4));
                   w.add<float>("extra", {1}, filled(1));
                 }));
               }});
  c.push_back({"a weight of a non-float dtype", Kind::weights, {"qkv/kernel", "I32"}, [] {
                 load_mha(mha_file([](attn::SafeTensorsWriter& w) {
                   w.add_raw("qkv/kernel", attn::DType::I32, {4, 12}, Bytes(4 * 48));
                   w.add<float>("qkv/bias", {12}, filled(12));
                   w.add<float>("proj/kernel", {4, 4}, filled(16));
                   w.add<float>("proj/bias", {4}, filled(4));
                 }));
               }});
  c.push_back({"an F64 value beyond float", Kind::weights, {"does not fit in float"}, [] {
                 attn::SafeTensorsWriter w;
                 w.add<double>("t", {1}, std::vector<double>{1e300});
                 (void)attn::SafeTensors::from_bytes(w.bytes(), "x").values<float>("t");
               }});
  c.push_back({"no tensor of that name", Kind::weights, {"no tensor named 'nope'"},
               [] { (void)attn::SafeTensors::from_bytes(file_of("{}"), "x").values<float>("nope"); }});
  c.push_back({"writer: negative extent", Kind::io, {"negative extent", "'t'"}, [] {
                 attn::SafeTensorsWriter w;
                 w.add<float>("t", {-1, 2}, std::vector<float>{});
               }});
  c.push_back({"writer: overflowing shape hidden by a zero", Kind::io, {"overflows", "'t'"}, [] {
                 attn::SafeTensorsWriter w;
                 w.add<float>("t", {Index(1) << 32, Index(1) << 32, 0}, std::vector<float>{});
               }});
  c.push_back({"model config without its format key", Kind::io, {"model config", "'format'"}, [] {
                 attn::SafeTensorsWriter w;
                 (void)attn::load_model<float>(Json::object({{"type", "channel"}}),
                                               attn::SafeTensors::from_bytes(w.bytes(), "x"));
               }});
  // sizes whose products overflow a 64-bit index: an error before anything is allocated or read
  namespace ops = attn::ops;
  constexpr Index big = Index(1) << 32, huge = Index(1) << 62;
  c.push_back({"AnyTensor whose element count overflows", Kind::shape, {"AnyTensor", "overflows"}, [] {
                 (void)attn::AnyTensor<float>(attn::Shape{(Index(1) << 61) + 1, 1, 8}, std::vector<float>(8, 0.5f));
               }});
  c.push_back({"conv2d: explicit padding overflowing the output", Kind::shape, {"conv2d", "output", "64-bit"}, [] {
                 ops::Conv2dOptions o;
                 o.padding = ops::Padding2d::explicit_pads(2147483647, 2147483647, 2147483647, 2147483647);
                 (void)ops::conv2d_geometry({1, 2, 2, 1}, {1, 1, 1, 1}, o);
               }});
  c.push_back({"conv2d: padding past 2^62", Kind::config, {"conv2d", "padding", "too large"}, [] {
                 ops::Conv2dOptions o;
                 o.padding = ops::Padding2d::explicit_pads(huge, huge, 0, 0);
                 (void)ops::conv2d_geometry({1, 2, 2, 1}, {1, 1, 1, 1}, o);
               }});
  c.push_back({"conv2d: dilation past 2^62", Kind::config, {"conv2d", "dilation_rate", "too large"}, [] {
                 ops::Conv2dOptions o;
                 o.dilation_rate = {huge, 1};
                 (void)ops::conv2d_geometry({1, 2, 2, 1}, {3, 1, 1, 1}, o);
               }});
  c.push_back({"conv2d: 'same' with a stride near 2^63", Kind::config, {"conv2d", "strides", "too large"}, [] {
                 ops::Conv2dOptions o;
                 o.padding = ops::Padding2d::same();
                 o.strides = {std::numeric_limits<Index>::max(), 1};
                 (void)ops::conv2d_geometry({1, 2, 2, 1}, {1, 1, 1, 1}, o);
               }});
  c.push_back({"extract_patches: k·k·C overflows", Kind::shape, {"extract_patches", "output"}, [] {
                 const attn::Tensor<float, 4> x(1, 2, 2, 1);
                 (void)ops::extract_patches<float>(x, (Index(1) << 61) + 1, 1);
               }});
  c.push_back({"fold_patches: k·k overflows", Kind::shape, {"fold_patches", "k·k·C"}, [] {
                 const attn::Tensor<float, 4> p(1, 1, 1, 4);
                 (void)ops::fold_patches<float>(p, big, 1, 1, 0);
               }});
  c.push_back({"window_reverse: a window grid that overflows", Kind::shape, {"window_reverse", "window grids"}, [] {
                 const attn::Tensor<float, 4> w(1, 1, 1, 1);
                 (void)ops::window_reverse<float>(w, big, big);
               }});
  c.push_back({"resize_nearest: an output that overflows", Kind::shape, {"resize_nearest", "output"}, [] {
                 attn::Tensor<float, 4> x(1, 2, 2, 4);
                 x.setZero();
                 (void)ops::resize_nearest<float>(x, big, Index(1) << 30);
               }});
  c.push_back({"shifted_window_mask above the allocation limit", Kind::config, {"window_size", "allocation limit"}, [] {
                 (void)ops::shifted_window_mask<float>(Index(1) << 20, Index(1) << 20, 1 << 10, 1 << 10, 0, 0);
               }});
  c.push_back({"load_resized_weights: a source shape that overflows", Kind::shape,
               {"positional_embedding", "load_resized_weights", "overflows"}, [] {
                 attn::PositionalEmbedding<float> l({.input_shape = {4, 5, 8}});
                 const std::vector<float> v(8, 0.0f);
                 l.load_resized_weights(v, attn::Shape{1, (Index(1) << 61) + 1, 1, 8});
               }});
  // integers past 2^63 are unsigned in JSON: they must not wrap to negative numbers (-1 is legal here)
  c.push_back({"2^64 - 1 for a parameter where -1 means 'as the input'", Kind::config,
               {"output_channels", "18446744073709551615"}, [] {
                 (void)attn::create_attention_layer<float>(
                     "non_local",
                     {{"attention_channels", 4}, {"output_channels", std::numeric_limits<std::uint64_t>::max()}});
               }});
  // a weight width that is a product of parameters: named by the largest (it was an int overflow that
  // printed a negative shape and blamed input_shape)
  c.push_back({"attn_ratio 2^31 - 1", Kind::config,
               {"parameter 'attn_ratio' (2147483647)", "[16, 34359738368]", "allocation limit"}, [] {
                 (void)attn::create_attention_layer<float>(
                     "mhsa_with_multi_head_position_and_strides",
                     {{"input_shape", {4, 4, 16}}, {"num_heads", 2}, {"attn_ratio", 2147483647}});
               }});
  // a model config file: a key twice, a directory
  c.push_back({"model config with a key twice", Kind::io, {"model config", "'embed_dim' appears twice"}, [] {
                 const auto path = temp_path("twice.json");
                 std::ofstream(path) << R"({"format": "attn.model", "version": 1, "layers": [{"type": "multi_head",
                     "embed_dim": 6, "embed_dim": 8, "num_heads": 2}]})";
                 (void)attn::detail::read_json_file(path);
               }});
  c.push_back({"model config that is a directory", Kind::io, {"model config", "is a directory"}, [] {
                 const auto dir = temp_path("dir");
                 std::filesystem::create_directories(dir);
                 (void)attn::detail::read_json_file(dir);
               }});
  return c;
}

}  // namespace

TEST_CASE("hostile: the catalogue of bad inputs raises typed errors that name what was wrong", "[hostile]") {
  const auto cases = catalogue();
  REQUIRE(cases.size() >= 60);
  const attn::LogLevel saved = attn::log_level();
  attn::set_log_level(attn::LogLevel::off);  // the factory logs its wrapped errors at ERROR
  for (const auto& c : cases) {
    INFO("case: " << c.name << " (expects " << kind_name(c.kind) << ")");
    std::string what;
    bool typed = false;
    try {
      c.run();
    } catch (const attn::Error& e) {
      what = e.what();
      typed = is_kind(e, c.kind);
      if (!typed) what = std::string(typeid(e).name()) + ": " + what;
    } catch (const std::exception& e) {
      what = std::string("non-attn exception ") + typeid(e).name() + ": " + e.what();
    }
    INFO("message: " << what);
    CHECK(typed);
    for (const auto& w : c.words) {
      INFO("expected words: " << w);
      CHECK(what.find(w) != std::string::npos);
    }
  }
  attn::set_log_level(saved);
}
