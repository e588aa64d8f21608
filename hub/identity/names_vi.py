"""Name, ward and street tables for the synthetic population: data, with rough frequencies.

Surname shares follow published estimates (Nguyễn ~38%, Trần ~11%, Lê ~9.5% …); given-name weights are a
plausible Zipf-like spread, not a census. Never real people.
"""

from __future__ import annotations

FAMILY: tuple[tuple[str, float], ...] = (
    ("Nguyễn", 38.4), ("Trần", 11.0), ("Lê", 9.5), ("Phạm", 7.0), ("Hoàng", 2.6), ("Huỳnh", 2.5),
    ("Phan", 4.5), ("Vũ", 2.0), ("Võ", 1.9), ("Đặng", 2.1), ("Bùi", 2.0), ("Đỗ", 1.4), ("Hồ", 1.3),
    ("Ngô", 1.3), ("Dương", 1.0), ("Lý", 0.5), ("Đào", 0.4), ("Đoàn", 0.4), ("Trương", 0.4), ("Lâm", 0.4),
    ("Mai", 0.3), ("Trịnh", 0.3), ("Đinh", 0.3), ("Lương", 0.3), ("Cao", 0.3), ("Tạ", 0.2), ("Châu", 0.2),
    ("Tô", 0.2), ("Quách", 0.1), ("Thái", 0.2), ("La", 0.1), ("Lưu", 0.2), ("Hà", 0.3), ("Kiều", 0.1),
)

MIDDLE_M_OLD = (("Văn", 40), ("Hữu", 8), ("Đức", 8), ("Minh", 8), ("Quốc", 6), ("Thanh", 5), ("Công", 5),
                ("Quang", 5), ("Ngọc", 3), ("Xuân", 3), ("Hoàng", 3), ("Thành", 3), ("Tấn", 3))
MIDDLE_F_OLD = (("Thị", 60), ("Ngọc", 8), ("Thu", 5), ("Kim", 4), ("Thanh", 5), ("Mỹ", 3), ("Hồng", 3),
                ("Thị Bích", 3), ("Thị Thu", 3), ("Thị Ngọc", 3), ("Phương", 2), ("Bích", 2))
MIDDLE_M_NEW = (("Minh", 14), ("Gia", 12), ("Hoàng", 8), ("Đức", 8), ("Quốc", 6), ("Văn", 8), ("Anh", 6),
                ("Bảo", 8), ("Thanh", 4), ("Nhật", 5), ("Tuấn", 4), ("Khánh", 4), ("Đăng", 4), ("Trung", 3))
MIDDLE_F_NEW = (("Ngọc", 12), ("Bảo", 8), ("Thị", 10), ("Minh", 8), ("Khánh", 6), ("Gia", 5), ("Phương", 5),
                ("Thảo", 4), ("Thanh", 4), ("Hoàng", 3), ("Quỳnh", 4), ("Tường", 2), ("Mai", 3), ("An", 4))

GIVEN_M = ("Anh", "Huy", "Khang", "Bảo", "Minh", "Phúc", "Long", "Nam", "Hùng", "Dũng", "Tuấn", "Quân", "Hải",
           "Sơn", "Thắng", "Tùng", "Đức", "Trung", "Hiếu", "Khánh", "Phong", "Thành", "Cường", "Hoàng", "Vinh",
           "Lâm", "Tài", "Nghĩa", "Tâm", "Toàn", "Hưng", "Lộc", "Thịnh", "Kiên", "Đạt", "Duy", "Hòa", "Quang",
           "Tiến", "Thái", "Vũ", "Việt", "Khôi", "Nhân", "Phát", "An", "Bình", "Châu", "Định", "Giang", "Hậu",
           "Hiển", "Khoa", "Lực", "Mạnh", "Nhật", "Quý", "Sang", "Tín", "Trí", "Tú", "Văn", "Vương", "Thuận",
           "Lợi", "Phước", "Hạnh", "Thủy", "Khải", "Đông")
GIVEN_F = ("Anh", "Linh", "Hương", "Trang", "Hà", "Lan", "Mai", "Ngọc", "Thảo", "Hằng", "Nhung", "Phương",
           "Hoa", "Thu", "Yến", "Nga", "Hạnh", "Dung", "Vân", "Loan", "Oanh", "Thủy", "Trinh", "Tuyết", "Hiền",
           "Quỳnh", "Vy", "Nhi", "My", "Hân", "Châu", "Diệp", "Giang", "Huyền", "Khuê", "Liên", "Ly", "Minh",
           "Nguyệt", "Nhàn", "Như", "Tâm", "Thanh", "Thúy", "Tiên", "Trâm", "Uyên", "Xuân", "Yên", "Bích",
           "Cúc", "Diễm", "Đào", "Hảo", "Hồng", "Kiều", "Lệ", "Mơ", "Ngân", "Phượng", "Sương", "Thoa", "Thơ",
           "Tươi", "Vi", "Hòa", "Khánh", "An", "Duyên", "Gấm")

WARD_NAMES = ("Bến Thành", "Sài Gòn", "Tân Định", "Đa Kao", "Bàn Cờ", "Xuân Hòa", "Nhiêu Lộc", "Chợ Lớn",
              "An Đông", "Chợ Quán", "Bình Tây", "Bình Phú", "Phú Lâm", "Tân Thuận", "Phú Thuận", "Tân Mỹ",
              "Tân Hưng", "Chánh Hưng", "Phú Định", "Bình Đông", "Diên Hồng", "Vườn Lài", "Hòa Hưng", "Minh Phụng",
              "Bình Thới", "Hòa Bình", "Phú Thọ", "Đông Hưng Thuận", "Trung Mỹ Tây", "Tân Thới Hiệp", "Thới An",
              "An Phú Đông", "An Lạc", "Tân Tạo", "Bình Tân", "Bình Trị Đông", "Bình Hưng Hòa", "Gia Định",
              "Bình Thạnh", "Bình Lợi Trung", "Thạnh Mỹ Tây", "Bình Quới", "Hạnh Thông", "An Nhơn", "Gò Vấp",
              "An Hội Đông", "Thông Tây Hội", "An Hội Tây", "Đức Nhuận", "Cầu Kiệu", "Phú Nhuận", "Tân Sơn Hòa",
              "Tân Sơn Nhất", "Tân Hòa", "Bảy Hiền", "Tân Bình", "Tân Sơn", "Tây Thạnh", "Tân Sơn Nhì", "Phú Thạnh",
              "Tân Phú", "Hiệp Bình", "Thủ Đức", "Tam Bình", "Linh Xuân", "Tăng Nhơn Phú", "Long Bình", "Long Phước",
              "Long Trường", "Cát Lái", "Bình Trưng", "Phước Long", "An Khánh", "Thủ Dầu Một", "Phú Lợi", "Dĩ An",
              "Thuận An", "Vũng Tàu", "Tam Thắng", "Rạch Dừa", "Phước Thắng", "Bà Rịa", "Long Hương", "Tam Long")

STREETS = ("Lê Lợi", "Nguyễn Trãi", "Trần Hưng Đạo", "Hai Bà Trưng", "Cách Mạng Tháng Tám", "Điện Biên Phủ",
           "Lý Thường Kiệt", "Nguyễn Huệ", "Lê Văn Sỹ", "Võ Văn Tần", "Nguyễn Đình Chiểu", "Phan Đăng Lưu",
           "Nguyễn Văn Cừ", "Trường Chinh", "Cộng Hòa", "Hoàng Văn Thụ", "Nguyễn Kiệm", "Quang Trung",
           "Lê Đức Thọ", "Phạm Văn Đồng", "Kha Vạn Cân", "Võ Văn Ngân", "Lũy Bán Bích", "Âu Cơ", "Tân Kỳ Tân Quý",
           "Kinh Dương Vương", "Hậu Giang", "Hồng Bàng", "Nguyễn Tri Phương", "Ba Tháng Hai", "Lạc Long Quân",
           "Nguyễn Thị Minh Khai", "Pasteur", "Nam Kỳ Khởi Nghĩa", "Bạch Đằng", "Xô Viết Nghệ Tĩnh",
           "Nguyễn Văn Linh", "Huỳnh Tấn Phát", "Lê Văn Việt", "Đỗ Xuân Hợp", "Nguyễn Duy Trinh", "Bình Long")

PROVINCES = (("079", 70), ("001", 3), ("031", 1), ("048", 1), ("074", 5), ("077", 3), ("075", 3), ("080", 2),
             ("082", 2), ("086", 2), ("087", 2), ("089", 2), ("040", 2), ("038", 1), ("051", 1))

COVID_VACCINES = (("AZ", "AstraZeneca"), ("PF", "Pfizer-BioNTech"), ("MD", "Moderna"), ("VC", "Vero Cell"),
                  ("SP", "Sputnik V"))
CHILD_VACCINES = (("MR", "Sởi - Rubella"), ("DPT", "Bạch hầu - Ho gà - Uốn ván"), ("OPV", "Bại liệt uống"),
                  ("JE", "Viêm não Nhật Bản"))
NEWBORN_VACCINES = (("VGB", "Viêm gan B sơ sinh"), ("BCG", "Lao"))
FACILITIES = ("79048", "79033", "79001", "79015", "79026", "79071", "79100", "79210", "79318", "79405",
              "74010", "77020")
BHYT_GROUPS = ("DN", "HC", "HT", "GD", "HS", "SV", "TE", "CN", "BT", "XN")
