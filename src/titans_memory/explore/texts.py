"""Every sentence the explorer shows, in English and Vietnamese, and its input errors.

The page looks each string up by key with :func:`text`; switching the language re-renders every
label and note from the other table. Both tables have the same keys (a test holds them to it).
Messages about bad input are :class:`ExploreInputError`: a code and parameters, so the page can
say them in either language, and a plain English ``str()`` for everyone else.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

#: Languages of the page: code -> name shown on the switch.
LANGUAGES: Mapping[str, str] = MappingProxyType({"en": "English", "vi": "Tiếng Việt"})

_EN: dict[str, str] = {
    # --- page --------------------------------------------------------------------------------
    "title": "titans explore: a surprise-driven memory you can play with",
    "intro": (
        "A small network whose **weights are the memory** is written at test time, harder when "
        "the input is **surprising**, and slowly **forgets**. Change anything on the left: "
        "every panel is recomputed by the library itself."
    ),
    "tab_playground": "Playground (demo layer)",
    "tab_text": "The core, on text",
    "language": "Language",
    # --- playground controls -----------------------------------------------------------------
    "scenario": "Scenario (the five figures)",
    "scenario_surprise_over_time": "Surprise over time (1 2 3, 99 at 14, 35, 50)",
    "scenario_memory_update_heatmap": "Memory update heatmap (1-4, 50 at 20, 40)",
    "scenario_momentum_vs_raw": "Momentum vs raw (1 2 3, 80 at 15, 30, 45)",
    "scenario_forgetting_effect": "Forgetting effect (1 2 3, 50 at 10): sweep forget_rate",
    "scenario_full_pipeline": "Full pipeline (1-5, 50 at 12, 30, 48)",
    "base": "Sequence (numbers, commas or spaces)",
    "anomalies": "Anomalies (timestep: height)",
    "anomaly_height": "Height of a new anomaly",
    "click_hint": "Click the input panel to place an anomaly at that step, or to remove one.",
    "write_lr": "write_lr (step size of a write)",
    "forget_rate": "forget_rate (forgetting per step)",
    "momentum": "momentum (smoothing of the surprise)",
    "memory_dim": "memory size (hidden width of the memory MLP)",
    "seed": "seed (initial weights)",
    "reset": "Reset to the scenario",
    "status_ok": "{steps} steps, computed in {ms:.0f} ms.",
    # --- playground panels -------------------------------------------------------------------
    "panel_input": "1. Input",
    "panel_raw": "2. Raw surprise s_t (log scale)",
    "panel_smooth": "3. Smoothed surprise m_t (log scale)",
    "panel_gate": "4. Write gate g_t",
    "panel_norm": "5. Memory weight norm",
    "panel_heat": "6. Write step on each first-layer weight",
    "axis_step": "timestep t",
    "axis_value": "value",
    "axis_surprise": "surprise",
    "axis_gate": "gate",
    "axis_norm": "norm",
    "axis_weight": "weight #",
    "look_input": (
        "The series fed to the layer, one value per step; red dots are the anomalies. "
        "**Click** on this panel to place an anomaly at the nearest step, or to remove one."
    ),
    "look_raw": (
        "How badly the predictor reconstructs x_t. Look for a **spike at every anomaly**, "
        "and for the usual pattern growing less surprising as the predictor learns it."
    ),
    "look_smooth": (
        "m_t = momentum · m_(t-1) + (1 - momentum) · s_t. Turn **momentum** up: each spike "
        "is carried forward longer, and flattened."
    ),
    "look_gate": (
        "g_t = s_t / (s_t + 3 c_t), c_t the usual surprise: how hard the memory writes, "
        "**always in [0, 1]**. Near 1 at an anomaly (and while the pattern is still new), low on "
        "the usual pattern once it is learned."
    ),
    "look_norm": (
        "Size of all the memory weights. Each step multiplies them by 1 - forget_rate: raise "
        "**forget_rate** and watch the norm decay faster; set it to 0 to see what the writes "
        "alone do."
    ),
    "look_heat": (
        "How much each write moved each weight (forgetting factored out). Bright columns are "
        "the steps that were **written**: early, while the pattern is new, then at the "
        "anomalies. Raise **write_lr** to brighten them."
    ),
    # --- the core, on text -------------------------------------------------------------------
    "text_input": "Text (type or paste)",
    "preset": "Preset (a MIRAS update rule)",
    "checkpoint": "Checkpoint directory (config.json + model.safetensors), or a titans train run",
    "load": "Load the checkpoint",
    "use_preset": "Back to the preset",
    "run_text": "Colour the text",
    "untrained": (
        "**No trained checkpoint: the gates are untrained.** This is a fresh `{name}` memory: "
        "its gate projections start small, so every byte's gates sit near the preset's initial "
        "values and their small differences come from random weights, not from learning. The "
        "surprise is real: the size of the memory's own gradient step on each byte."
    ),
    "trained": "**Trained checkpoint** `{path}`: the gates are the learned ones.",
    "trained_random_embedding": " Its bytes go through the fixed random embedding.",
    "tokens_note": (
        "Tokens are the text's UTF-8 bytes (256 values) through a fixed random embedding "
        "(seed 0, not learned). A character of several bytes shows their mean; hover for each "
        "byte's value. {heads} head(s), averaged."
    ),
    "sig_surprise": "Surprise: size of the memory's gradient step, θ_t · ‖∇ℓ(M; k_t, v_t)‖",
    "sig_lr": "Inner learning rate θ_t",
    "sig_forget": "Forget rate α_t (the memory keeps 1 - α_t)",
    "sig_momentum": "Momentum η_t (weight of past surprise)",
    "no_gate": "this preset has no such gate",
    "range": "white = {low:.4g}, full colour = {high:.4g}",
    "look_text": (
        "Look for: the bytes on which the memory takes its largest steps (hover for the values), "
        "and how the presets differ: their steps differ by orders of magnitude. Gradients are "
        "taken at the weights of the chunk's start ({chunk} bytes per chunk), so within a chunk "
        "a repeat cannot look familiar yet. A fresh memory's projections are random: do not "
        "expect it to find repeated words familiar; that takes training."
    ),
    "recall_title": "Recall against age: {name}",
    "recall_note": (
        "96 random (key, value) pairs are written into the preset's memory at its initial gates, "
        "then each is read back: the cosine of the read with the value (1 = perfect), by age "
        "(0 = the last written), mean ± std over 32 streams. Forgetting and interference show "
        "as the curve falling with age."
    ),
    "axis_age": "age (pairs written after it)",
    "axis_cosine": "cosine(read, value)",
    "status_text": "{count} bytes, computed in {ms:.0f} ms.",
    # --- input errors ------------------------------------------------------------------------
    "error_prefix": "Cannot compute this",
    "err_empty_sequence": "the sequence is empty: type at least one number",
    "err_not_a_number": "{what}: {token!r} is not a number",
    "err_not_finite": "{what}: {value} is not a finite number",
    "err_out_of_range": "{what}: {value:g} is out of range (|value| <= {limit:g})",
    "err_too_long": "the sequence has {count} values; at most {limit} are run",
    "err_bad_anomaly": "anomaly {item!r}: expected 'timestep: height', e.g. '12: 50'",
    "err_anomaly_step": "anomaly at t={t}: the sequence has timesteps 0 to {last}",
    "err_anomaly_twice": "anomaly at t={t} is given twice",
    "err_setting": "a setting is out of range: {detail}",
    "err_unexpected": "unexpected error ({kind}): {detail}",
    "err_empty_text": "the text is empty: type or paste some text",
    "err_text_too_long": (
        "the text is {count} bytes in UTF-8; at most {limit} are run, so that the page answers "
        "within a few seconds"
    ),
    "err_ckpt_dir": "checkpoint {path!r} is not a directory",
    "err_ckpt_files": "checkpoint {path!r} lacks {missing}",
    "err_ckpt_config": "the checkpoint's config.json does not load: {detail}",
    "err_ckpt_weights": "the checkpoint's model.safetensors does not load: {detail}",
    "err_ckpt_model": "the titans train checkpoint does not load: {detail}",
    "err_ckpt_no_memory": (
        "checkpoint {path!r} is a model without memory ({arch}): there is no memory to show"
    ),
    "err_ckpt_hope": (
        "checkpoint {path!r} is a HOPE model: its memories are shown on the CMS levels tab"
    ),
    "what_value": "sequence value #{index}",
    "what_anomaly": "anomaly at t={t}",
    "what_height": "anomaly height",
}

_VI: dict[str, str] = {
    # --- page --------------------------------------------------------------------------------
    "title": "titans explore: chơi với một bộ nhớ vận hành bằng độ bất ngờ",
    "intro": (
        "Một mạng nơ-ron nhỏ mà **chính trọng số là bộ nhớ** được ghi ngay lúc chạy, ghi mạnh "
        "hơn khi đầu vào **bất ngờ**, và **quên** dần. Thay đổi bất cứ thứ gì bên trái: mọi "
        "biểu đồ được chính thư viện tính lại."
    ),
    "tab_playground": "Sân chơi (tầng demo)",
    "tab_text": "Lõi, trên văn bản",
    "language": "Ngôn ngữ",
    # --- playground controls -----------------------------------------------------------------
    "scenario": "Kịch bản (năm hình minh hoạ)",
    "scenario_surprise_over_time": "Độ bất ngờ theo thời gian (1 2 3, 99 tại 14, 35, 50)",
    "scenario_memory_update_heatmap": "Bản đồ nhiệt cập nhật bộ nhớ (1-4, 50 tại 20, 40)",
    "scenario_momentum_vs_raw": "Quán tính và giá trị thô (1 2 3, 80 tại 15, 30, 45)",
    "scenario_forgetting_effect": "Tác dụng của việc quên (1 2 3, 50 tại 10): tự kéo forget_rate",
    "scenario_full_pipeline": "Toàn bộ quy trình (1-5, 50 tại 12, 30, 48)",
    "base": "Chuỗi (các số, cách nhau bởi dấu phẩy hoặc dấu cách)",
    "anomalies": "Điểm bất thường (bước: độ cao)",
    "anomaly_height": "Độ cao của điểm bất thường mới",
    "click_hint": "Bấm vào biểu đồ đầu vào để đặt một điểm bất thường tại bước đó, hoặc gỡ nó.",
    "write_lr": "write_lr (cỡ bước của một lần ghi)",
    "forget_rate": "forget_rate (mức quên mỗi bước)",
    "momentum": "momentum (làm mượt độ bất ngờ)",
    "memory_dim": "cỡ bộ nhớ (độ rộng lớp ẩn của MLP bộ nhớ)",
    "seed": "seed (trọng số ban đầu)",
    "reset": "Trở về kịch bản",
    "status_ok": "{steps} bước, tính trong {ms:.0f} ms.",
    # --- playground panels -------------------------------------------------------------------
    "panel_input": "1. Đầu vào",
    "panel_raw": "2. Độ bất ngờ thô s_t (thang log)",
    "panel_smooth": "3. Độ bất ngờ đã làm mượt m_t (thang log)",
    "panel_gate": "4. Cổng ghi g_t",
    "panel_norm": "5. Chuẩn của trọng số bộ nhớ",
    "panel_heat": "6. Bước ghi trên từng trọng số của lớp đầu",
    "axis_step": "bước t",
    "axis_value": "giá trị",
    "axis_surprise": "độ bất ngờ",
    "axis_gate": "cổng",
    "axis_norm": "chuẩn",
    "axis_weight": "trọng số #",
    "look_input": (
        "Chuỗi đưa vào tầng nhớ, mỗi bước một giá trị; chấm đỏ là các điểm bất thường. "
        "**Bấm** vào biểu đồ này để đặt một điểm bất thường tại bước gần nhất, hoặc gỡ nó đi."
    ),
    "look_raw": (
        "Mạng dự đoán tái tạo x_t kém đến đâu. Hãy tìm **đỉnh nhọn tại mỗi điểm bất thường**, "
        "và thấy mẫu quen thuộc bớt bất ngờ dần khi mạng dự đoán học được nó."
    ),
    "look_smooth": (
        "m_t = momentum · m_(t-1) + (1 - momentum) · s_t. Tăng **momentum**: mỗi đỉnh được "
        "kéo dài hơn về sau, và thấp hơn."
    ),
    "look_gate": (
        "g_t = s_t / (s_t + 3 c_t), c_t là độ bất ngờ thường gặp: bộ nhớ ghi mạnh đến đâu, "
        "**luôn nằm trong [0, 1]**. Gần 1 tại điểm bất thường (và khi mẫu còn mới), thấp trên "
        "mẫu quen thuộc khi đã học được nó."
    ),
    "look_norm": (
        "Độ lớn của toàn bộ trọng số bộ nhớ. Mỗi bước nhân chúng với 1 - forget_rate: tăng "
        "**forget_rate** và xem chuẩn giảm nhanh hơn; đặt nó bằng 0 để thấy riêng tác dụng của "
        "các lần ghi."
    ),
    "look_heat": (
        "Mỗi lần ghi làm mỗi trọng số dịch chuyển bao nhiêu (đã loại phần quên). Các cột sáng "
        "là những bước **được ghi**: lúc đầu, khi mẫu còn mới, rồi tại các điểm bất thường. "
        "Tăng **write_lr** để chúng sáng hơn."
    ),
    # --- the core, on text -------------------------------------------------------------------
    "text_input": "Văn bản (gõ hoặc dán vào)",
    "preset": "Cấu hình có sẵn (một luật cập nhật MIRAS)",
    "checkpoint": "Thư mục checkpoint (config.json + model.safetensors), hoặc một lần chạy titans train",
    "load": "Nạp checkpoint",
    "use_preset": "Quay lại cấu hình có sẵn",
    "run_text": "Tô màu văn bản",
    "untrained": (
        "**Không có checkpoint đã huấn luyện: các cổng chưa được huấn luyện.** Đây là một bộ "
        "nhớ `{name}` mới tạo: các phép chiếu của cổng bắt đầu rất nhỏ, nên cổng của mọi byte "
        "đều ở gần giá trị ban đầu của cấu hình, và chênh lệch nhỏ giữa chúng đến từ trọng số "
        "ngẫu nhiên chứ không phải từ việc học. Độ bất ngờ thì là thật: đó là độ lớn bước "
        "gradient của chính bộ nhớ trên từng byte."
    ),
    "trained": "**Checkpoint đã huấn luyện** `{path}`: các cổng là cổng đã học.",
    "trained_random_embedding": " Các byte đi qua phép nhúng ngẫu nhiên cố định.",
    "tokens_note": (
        "Token là các byte UTF-8 của văn bản (256 giá trị), qua một phép nhúng ngẫu nhiên cố "
        "định (seed 0, không học). Một ký tự gồm nhiều byte hiển thị trung bình của chúng; rê "
        "chuột để xem giá trị từng byte. {heads} đầu (head), lấy trung bình."
    ),
    "sig_surprise": "Độ bất ngờ: độ lớn bước gradient của bộ nhớ, θ_t · ‖∇ℓ(M; k_t, v_t)‖",
    "sig_lr": "Tốc độ học bên trong θ_t",
    "sig_forget": "Tỉ lệ quên α_t (bộ nhớ giữ lại 1 - α_t)",
    "sig_momentum": "Quán tính η_t (trọng số của độ bất ngờ quá khứ)",
    "no_gate": "cấu hình này không có cổng đó",
    "range": "trắng = {low:.4g}, đậm nhất = {high:.4g}",
    "look_text": (
        "Hãy tìm: những byte mà bộ nhớ thực hiện bước lớn nhất (rê chuột để xem giá trị), và sự khác "
        "nhau giữa các cấu hình: cỡ bước của chúng chênh nhau nhiều bậc độ lớn. Gradient được "
        "lấy tại trọng số ở đầu khúc ({chunk} byte mỗi khúc), nên trong cùng một khúc, một lần "
        "lặp lại chưa thể trông quen thuộc. Các phép chiếu của một bộ nhớ mới tạo là ngẫu nhiên: "
        "đừng mong nó thấy các từ lặp lại là quen; điều đó cần huấn luyện."
    ),
    "recall_title": "Khả năng nhớ lại theo tuổi: {name}",
    "recall_note": (
        "Ghi 96 cặp (khoá, giá trị) ngẫu nhiên vào bộ nhớ của cấu hình với các cổng ban đầu, "
        "rồi đọc lại từng cặp: cosine giữa giá trị đọc được và giá trị gốc (1 = hoàn hảo), "
        "theo tuổi (0 = cặp ghi cuối cùng), trung bình ± độ lệch chuẩn trên 32 luồng. Việc quên "
        "và sự giao thoa hiện ra khi đường cong đi xuống theo tuổi."
    ),
    "axis_age": "tuổi (số cặp ghi sau nó)",
    "axis_cosine": "cosine(đọc, giá trị)",
    "status_text": "{count} byte, tính trong {ms:.0f} ms.",
    # --- input errors ------------------------------------------------------------------------
    "error_prefix": "Không tính được",
    "err_empty_sequence": "chuỗi đang trống: hãy nhập ít nhất một số",
    "err_not_a_number": "{what}: {token!r} không phải là một số",
    "err_not_finite": "{what}: {value} không phải là một số hữu hạn",
    "err_out_of_range": "{what}: {value:g} nằm ngoài khoảng cho phép (|giá trị| <= {limit:g})",
    "err_too_long": "chuỗi có {count} giá trị; chỉ chạy tối đa {limit}",
    "err_bad_anomaly": "điểm bất thường {item!r}: cần dạng 'bước: độ cao', ví dụ '12: 50'",
    "err_anomaly_step": "điểm bất thường tại t={t}: chuỗi chỉ có các bước từ 0 đến {last}",
    "err_anomaly_twice": "điểm bất thường tại t={t} bị nhập hai lần",
    "err_setting": "một tham số nằm ngoài khoảng cho phép: {detail}",
    "err_unexpected": "lỗi ngoài dự kiến ({kind}): {detail}",
    "err_empty_text": "văn bản đang trống: hãy gõ hoặc dán một đoạn văn bản",
    "err_text_too_long": (
        "văn bản dài {count} byte UTF-8; chỉ chạy tối đa {limit} byte, để trang trả lời trong "
        "vài giây"
    ),
    "err_ckpt_dir": "checkpoint {path!r} không phải là một thư mục",
    "err_ckpt_files": "checkpoint {path!r} thiếu {missing}",
    "err_ckpt_config": "không nạp được config.json của checkpoint: {detail}",
    "err_ckpt_weights": "không nạp được model.safetensors của checkpoint: {detail}",
    "err_ckpt_model": "không nạp được checkpoint của titans train: {detail}",
    "err_ckpt_no_memory": (
        "checkpoint {path!r} là một mô hình không có bộ nhớ ({arch}): không có bộ nhớ nào để hiển thị"
    ),
    "err_ckpt_hope": (
        "checkpoint {path!r} là một mô hình HOPE: các bộ nhớ của nó được hiển thị ở thẻ các mức CMS"
    ),
    "what_value": "giá trị thứ {index} của chuỗi",
    "what_anomaly": "điểm bất thường tại t={t}",
    "what_height": "độ cao điểm bất thường",
}

#: The tables, by language code.
TEXTS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {"en": MappingProxyType(_EN), "vi": MappingProxyType(_VI)}
)


def text(lang: str, key: str, **params: Any) -> str:
    """The string ``key`` in language ``lang``, formatted with ``params``.

    Raises:
        ValueError: unknown language.
        KeyError: unknown key.
    """
    if lang not in TEXTS:
        raise ValueError(f"lang must be one of {', '.join(TEXTS)}, got {lang!r}")
    template = TEXTS[lang][key]
    return template.format(**params) if params else template


class ExploreInputError(ValueError):
    """Bad input typed into the explorer: a message key and its parameters.

    ``str(err)`` is the English message; :meth:`message` gives it in any language. Parameters
    named ``what`` hold a ``(key, params)`` pair (the name of the offending field), translated
    along with the message.
    """

    def __init__(self, code: str, **params: Any) -> None:
        self.code = code
        self.params = params
        super().__init__(self.message("en"))

    def message(self, lang: str) -> str:
        """The message in language ``lang``."""
        params = dict(self.params)
        what = params.get("what")
        if isinstance(what, tuple):
            key, what_params = what
            params["what"] = text(lang, key, **what_params)
        return text(lang, self.code, **params)
